import Foundation
import Yams

/// Typed, line-aware access to one YAML mapping of a configuration file: every error names the file, the line and
/// the dotted key (`publishers[0].url`).
struct YAMLMapping {
    let file: String
    /// The dotted path of this mapping, "" at the top.
    let path: String
    let node: Node
    private let pairs: [(key: String, value: Node)]

    /// Largest configuration file read: a huge file is refused rather than parsed.
    static let maxFileBytes = 1 << 20

    /// Reads and parses `file`; an empty document is an empty mapping.
    static func load(file: String) throws(ConfigError) -> YAMLMapping {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw ConfigError(file: file, message: "cannot read the file")
        }
        guard data.count <= maxFileBytes else {
            throw ConfigError(file: file, message: "file is larger than \(maxFileBytes / 1024) KiB")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: file, message: "not UTF-8 text")
        }
        return try parse(text, file: file)
    }

    /// Parses `text` as the content of `file`.
    static func parse(_ text: String, file: String) throws(ConfigError) -> YAMLMapping {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw ConfigError(file: file, line: Self.line(of: error), message: "not valid YAML: \(Self.problem(error))")
        } catch {
            throw ConfigError(file: file, message: "not valid YAML: \(error)")
        }
        return try YAMLMapping(file: file, path: "", node: root ?? Node.mapping(Node.Mapping([])))
    }

    init(file: String, path: String, node: Node) throws(ConfigError) {
        self.file = file
        self.path = path
        self.node = node
        guard case .mapping(let mapping) = node else {
            throw ConfigError(file: file, line: node.mark?.line, key: path.isEmpty ? nil : path,
                              message: "expected a mapping of keys to values")
        }
        var pairs: [(String, Node)] = []
        for (key, value) in mapping {
            guard let name = key.string else {
                throw ConfigError(file: file, line: key.mark?.line, key: path.isEmpty ? nil : path,
                                  message: "keys must be strings")
            }
            pairs.append((name, value))
        }
        self.pairs = pairs
    }

    func keyPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func value(_ key: String) -> Node? { pairs.first { $0.key == key }?.value }

    func error(_ key: String, _ message: String) -> ConfigError {
        ConfigError(file: file, line: (value(key) ?? node).mark?.line, key: keyPath(key), message: message)
    }

    /// Refuses keys outside `known`, naming the first unknown one and the keys that are allowed.
    func rejectUnknownKeys(_ known: [String]) throws(ConfigError) {
        for (key, value) in pairs where !known.contains(key) {
            throw ConfigError(file: file, line: value.mark?.line, key: keyPath(key),
                              message: "unknown key (known keys: \(known.joined(separator: ", ")))")
        }
    }

    /// The keys not in `known`, for files where unknown keys only earn a warning.
    func unknownKeys(_ known: [String]) -> [String] { pairs.map(\.key).filter { !known.contains($0) } }

    private func scalar(_ key: String) throws(ConfigError) -> Node.Scalar? {
        guard let node = value(key) else { return nil }
        guard case .scalar(let scalar) = node else { throw error(key, "expected a single value") }
        if node.null != nil { return nil }
        return scalar
    }

    func string(_ key: String) throws(ConfigError) -> String? {
        try scalar(key)?.string
    }

    func requiredString(_ key: String) throws(ConfigError) -> String {
        guard let value = try string(key), !value.isEmpty else { throw error(key, "required value is missing") }
        return value
    }

    func int(_ key: String, range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        guard let text = try scalar(key)?.string else { return nil }
        guard let number = Int(text) else { throw error(key, "expected an integer, got '\(text)'") }
        guard range.contains(number) else {
            throw error(key, "\(number) is out of range \(range.lowerBound)...\(range.upperBound)")
        }
        return number
    }

    func double(_ key: String, range: ClosedRange<Double>) throws(ConfigError) -> Double? {
        guard let text = try scalar(key)?.string else { return nil }
        guard let number = Double(text), number.isFinite else { throw error(key, "expected a number, got '\(text)'") }
        guard range.contains(number) else {
            throw error(key, "\(text) is out of range \(range.lowerBound)...\(range.upperBound)")
        }
        return number
    }

    func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let node = value(key), try scalar(key) != nil else { return nil }
        guard let value = node.bool else { throw error(key, "expected true or false") }
        return value
    }

    /// A list of strings; a single string is taken as a list of one.
    func strings(_ key: String) throws(ConfigError) -> [String]? {
        guard let node = value(key) else { return nil }
        if case .scalar = node { return try string(key).map { [$0] } }
        guard case .sequence(let sequence) = node else { throw error(key, "expected a list") }
        var items: [String] = []
        for item in sequence {
            guard case .scalar = item, let text = item.string else {
                throw ConfigError(file: file, line: item.mark?.line, key: keyPath(key), message: "expected a string")
            }
            items.append(text)
        }
        return items
    }

    /// A nested mapping (`prometheus`); nil when absent or null.
    func mapping(_ key: String) throws(ConfigError) -> YAMLMapping? {
        guard let node = value(key), node.null == nil else { return nil }
        return try YAMLMapping(file: file, path: keyPath(key), node: node)
    }

    /// A list of mappings (`publishers`, `sources`).
    func mappings(_ key: String) throws(ConfigError) -> [YAMLMapping]? {
        guard let node = value(key) else { return nil }
        if node.null != nil { return [] }
        guard case .sequence(let sequence) = node else { throw error(key, "expected a list") }
        var items: [YAMLMapping] = []
        for (index, item) in sequence.enumerated() {
            items.append(try YAMLMapping(file: file, path: "\(keyPath(key))[\(index)]", node: item))
        }
        return items
    }

    private static func line(of error: YamlError) -> Int? {
        switch error {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _): return mark.line
        default: return nil
        }
    }

    private static func problem(_ error: YamlError) -> String {
        switch error {
        case .scanner(_, let problem, _, _), .parser(_, let problem, _, _), .composer(_, let problem, _, _):
            return problem
        default:
            return "\(error)".split(whereSeparator: \.isNewline).first.map(String.init) ?? "\(error)"
        }
    }
}
