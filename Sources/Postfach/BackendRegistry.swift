import Foundation

/// What a backend factory gets: the backend's parameters from the configuration, the folder relative paths resolve
/// against, and where secrets come from.
public struct BackendSettings: Sendable {
    /// Every key of the backend's configuration object but `kind`, as text.
    public var parameters: [String: String]
    /// The configuration file's folder.
    public var baseDirectory: URL
    /// The environment secrets are read from (the process's own, unless a test gives another).
    public var environment: [String: String]

    public init(parameters: [String: String], baseDirectory: URL,
                environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.parameters = parameters
        self.baseDirectory = baseDirectory
        self.environment = environment
    }

    /// A path parameter, resolved against ``baseDirectory``.
    public func path(_ value: String) -> URL {
        (value.hasPrefix("/") ? URL(fileURLWithPath: value) : baseDirectory.appendingPathComponent(value)).standardizedFileURL
    }

    /// The secret `name`: from the environment variable parameter `<name>Env` names, or from the file parameter
    /// `<name>File` names (its content, a final line break removed). Never from the configuration file itself: a
    /// parameter `<name>` is refused. nil when neither is configured.
    public func secret(_ name: String) throws -> String? {
        if parameters[name] != nil {
            throw PostfachError(code: .rejected, message: "'\(name)' must not be written into the configuration: "
                                + "name an environment variable ('\(name)Env') or a file ('\(name)File')")
        }
        if let variable = parameters[name + "Env"] {
            guard let value = environment[variable], !value.isEmpty else {
                throw PostfachError(code: .rejected, message: "the environment variable \(variable) ('\(name)Env') is not set")
            }
            return value
        }
        if let file = parameters[name + "File"] {
            let url = path(file)
            guard let data = FileManager.default.contents(atPath: url.path), var value = String(data: data, encoding: .utf8) else {
                throw PostfachError(code: .rejected, message: "\(url.path) ('\(name)File') cannot be read")
            }
            while value.hasSuffix("\n") || value.hasSuffix("\r") { value.removeLast() }
            guard !value.isEmpty else { throw PostfachError(code: .rejected, message: "\(url.path) ('\(name)File') is empty") }
            return value
        }
        return nil
    }
}

/// Makes backends from configuration: a kind name and string parameters. A new kind registers its factory here
/// (in the executable that composes the system); nothing else changes.
public struct PostfachBackendRegistry: Sendable {
    /// Builds a backend from its settings (it may open connections; it reads secrets from the environment or
    /// files, never from the configuration file).
    public typealias Factory = @Sendable (_ settings: BackendSettings) async throws -> any PostfachBackend

    private var factories: [String: Factory] = [:]
    private var accepted: [String: Set<String>] = [:]

    /// An empty registry.
    public init() {}

    /// The kinds this module ships: `filesystem` (parameters `directory` and optionally `journal`) and `memory`.
    public static var builtIn: PostfachBackendRegistry {
        var registry = PostfachBackendRegistry()
        registry.register(kind: "filesystem", parameters: ["directory", "journal"]) { settings in
            guard let directory = settings.parameters["directory"] else {
                throw PostfachError(code: .rejected, message: "a filesystem backend needs the parameter 'directory'")
            }
            return try FilesystemBackend(root: settings.path(directory), journal: settings.parameters["journal"].map(settings.path))
        }
        registry.register(kind: "memory", parameters: []) { _ in InMemoryBackend() }
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
    public func make(kind: String, settings: BackendSettings) async throws -> any PostfachBackend {
        guard let factory = factories[kind] else {
            throw PostfachError(code: .rejected, message: "unknown backend kind '\(kind)' (known: \(kinds.joined(separator: ", ")))")
        }
        if let names = accepted[kind], let unknown = settings.parameters.keys.filter({ !names.contains($0) }).sorted().first {
            let known = names.isEmpty ? "none" : names.sorted().joined(separator: ", ")
            throw PostfachError(code: .rejected, message: "unknown parameter '\(unknown)' for a \(kind) backend (known: \(known))")
        }
        return try await factory(settings)
    }
}
