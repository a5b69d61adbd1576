import Foundation
import Testing
import XoevValidation

/// Which libxml2 the suites really ran against: scripts/test-libxml2 builds another release and sets
/// `AMTSBOTE_EXPECT_LIBXML2`, so a build that silently used the system's libxml2 fails here.
@Suite("libxml2 at run time")
struct LibXML2VersionTests {
    @Test("the loaded libxml2 is the expected one (AMTSBOTE_EXPECT_LIBXML2, when set)")
    func runtimeVersion() {
        let version = Validator.libxml2Version
        print("libxml2 at run time: \(version)")
        #expect(version.split(separator: ".").count == 3, "\(version)")
        if let expected = ProcessInfo.processInfo.environment["AMTSBOTE_EXPECT_LIBXML2"], !expected.isEmpty {
            #expect(version == expected)
        }
    }
}
