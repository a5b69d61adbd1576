import Foundation

/// Makes backends from configuration: a kind name and string parameters. A new kind registers its factory here
/// (in the executable that composes the system); nothing else changes.
public struct PostfachBackendRegistry: Sendable {
    /// Builds a backend from its parameters; relative paths resolve against `baseDirectory`.
    public typealias Factory = @Sendable (_ parameters: [String: String], _ baseDirectory: URL) throws -> any PostfachBackend

    private var factories: [String: Factory] = [:]
    private var accepted: [String: Set<String>] = [:]

    /// An empty registry.
    public init() {}

    /// The kinds this module ships: `filesystem` (parameters `directory` and optionally `journal`) and `memory`.
    public static var builtIn: PostfachBackendRegistry {
        var registry = PostfachBackendRegistry()
        registry.register(kind: "filesystem", parameters: ["directory", "journal"]) { parameters, base in
            guard let directory = parameters["directory"] else {
                throw PostfachError(code: .rejected, message: "a filesystem backend needs the parameter 'directory'")
            }
            let url = directory.hasPrefix("/") ? URL(fileURLWithPath: directory) : base.appendingPathComponent(directory)
            let journal = parameters["journal"].map {
                ($0.hasPrefix("/") ? URL(fileURLWithPath: $0) : base.appendingPathComponent($0)).standardizedFileURL
            }
            return try FilesystemBackend(root: url.standardizedFileURL, journal: journal)
        }
        registry.register(kind: "memory", parameters: []) { _, _ in InMemoryBackend() }
        return registry
    }

    /// Adds or replaces the factory of a kind. `parameters`: the parameter names the kind accepts (any other is
    /// refused, so a typo cannot fall back to a default); nil accepts every name.
    public mutating func register(kind: String, parameters: Set<String>? = nil, factory: @escaping Factory) {
        factories[kind] = factory
        accepted[kind] = parameters
    }

    /// Registered kinds, sorted.
    public var kinds: [String] { factories.keys.sorted() }

    /// Builds a backend of a registered kind.
    public func make(kind: String, parameters: [String: String], baseDirectory: URL) throws -> any PostfachBackend {
        guard let factory = factories[kind] else {
            throw PostfachError(code: .rejected, message: "unknown backend kind '\(kind)' (known: \(kinds.joined(separator: ", ")))")
        }
        if let names = accepted[kind], let unknown = parameters.keys.filter({ !names.contains($0) }).sorted().first {
            let known = names.isEmpty ? "none" : names.sorted().joined(separator: ", ")
            throw PostfachError(code: .rejected, message: "unknown parameter '\(unknown)' for a \(kind) backend (known: \(known))")
        }
        return try factory(parameters, baseDirectory)
    }
}
