import Foundation

/// One document named on the command line, after folders were expanded.
enum InputSource: Hashable {
    /// A file to read; `name` is how it is shown.
    case file(path: String)
    /// Standard input, streamed.
    case standardInput
    /// A command-line argument that could not be used, with the reason.
    case unreadable(path: String, reason: String)
}

/// Expands command-line paths: files as given, folders recursively (`*.xml`, sorted), `-` for standard input.
/// Symbolic links are followed only when they point inside the folder being walked; linked folders are skipped,
/// so a walk can neither leave the tree nor loop.
enum InputFiles {
    static func expand(_ arguments: [String]) -> [InputSource] {
        var sources: [InputSource] = []
        for argument in arguments {
            if argument == "-" {
                sources.append(.standardInput)
                continue
            }
            var info = stat()
            guard stat(argument, &info) == 0 else {
                sources.append(.unreadable(path: argument, reason: String(cString: strerror(errno))))
                continue
            }
            if (info.st_mode & S_IFMT) == S_IFDIR {
                guard let root = realPath(argument) else {
                    sources.append(.unreadable(path: argument, reason: String(cString: strerror(errno))))
                    continue
                }
                walk(directory: argument, root: root, into: &sources)
            } else {
                sources.append(.file(path: argument))
            }
        }
        return sources
    }

    private static func walk(directory: String, root: String, into sources: inout [InputSource]) {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        } catch {
            sources.append(.unreadable(path: directory, reason: "cannot list the folder"))
            return
        }
        for name in names {
            let path = directory.hasSuffix("/") ? directory + name : directory + "/" + name
            var info = stat()
            guard lstat(path, &info) == 0 else { continue }
            switch info.st_mode & S_IFMT {
            case S_IFDIR:
                walk(directory: path, root: root, into: &sources)
            case S_IFREG:
                if isXML(name) { sources.append(.file(path: path)) }
            case S_IFLNK:
                // Followed only to a regular file inside the tree being walked.
                guard isXML(name), let target = realPath(path), target.hasPrefix(root + "/") else { continue }
                var targetInfo = stat()
                if stat(target, &targetInfo) == 0, (targetInfo.st_mode & S_IFMT) == S_IFREG {
                    sources.append(.file(path: path))
                }
            default:
                continue
            }
        }
    }

    private static func isXML(_ name: String) -> Bool { name.lowercased().hasSuffix(".xml") }

    private static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
