import Foundation

/// Makes backends from configuration: a kind name and string parameters. A new kind registers its factory here
/// (in the executable that composes the system); nothing else changes.
public struct PostfachBackendRegistry: Sendable {
    /// Builds a backend from its parameters; relative paths resolve against `baseDirectory`.
    public typealias Factory = @Sendable (_ parameters: [String: String], _ baseDirectory: URL) throws -> any PostfachBackend

    private var factories: [String: Factory] = [:]

    /// An empty registry.
    public init() {}

    /// The kinds this module ships: `filesystem` (parameter `directory`) and `memory`.
    public static var builtIn: PostfachBackendRegistry {
        var registry = PostfachBackendRegistry()
        registry.register(kind: "filesystem") { parameters, base in
            guard let directory = parameters["directory"] else {
                throw PostfachError(code: .rejected, message: "a filesystem backend needs the parameter 'directory'")
            }
            let url = directory.hasPrefix("/") ? URL(fileURLWithPath: directory) : base.appendingPathComponent(directory)
            return try FilesystemBackend(root: url.standardizedFileURL)
        }
        registry.register(kind: "memory") { _, _ in InMemoryBackend() }
        return registry
    }

    /// Adds or replaces the factory of a kind.
    public mutating func register(kind: String, factory: @escaping Factory) {
        factories[kind] = factory
    }

    /// Registered kinds, sorted.
    public var kinds: [String] { factories.keys.sorted() }

    /// Builds a backend of a registered kind.
    public func make(kind: String, parameters: [String: String], baseDirectory: URL) throws -> any PostfachBackend {
        guard let factory = factories[kind] else {
            throw PostfachError(code: .rejected, message: "unknown backend kind '\(kind)' (known: \(kinds.joined(separator: ", ")))")
        }
        return try factory(parameters, baseDirectory)
    }
}
