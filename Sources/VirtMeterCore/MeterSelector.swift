/// Which meters a polling source wants, by ceilometer's polling.yaml rules: `*` and `?` wildcards, `!name`
/// exclusions (checked first), and a list of only exclusions admits everything else.
package struct MeterSelector: Sendable, Equatable {
    package let patterns: [String]

    /// Checks the rules ceilometer enforces: at least one entry, no plain names mixed with `!` names, and no
    /// plain names next to a bare `*`. Throws `MeterSelectorError`.
    package init(_ patterns: [String]) throws(MeterSelectorError) {
        let cleaned = patterns.map { $0.trimmingSpaces }.filter { !$0.isEmpty }
        guard !cleaned.isEmpty else { throw .empty }
        let plain = cleaned.filter { !$0.hasPrefix("!") && !$0.hasPrefix("*") }
        if !plain.isEmpty && cleaned.contains(where: { $0.hasPrefix("!") }) {
            throw .mixedInclusionAndExclusion(plain)
        }
        if cleaned.contains("*") && !plain.isEmpty { throw .plainNamesWithWildcard(plain) }
        self.patterns = cleaned
    }

    /// Parses a comma-separated list (`cpu_util,memory.*`).
    package init(commaSeparated list: String) throws(MeterSelectorError) {
        try self.init(list.split(separator: ",").map(String.init))
    }

    /// Everything.
    package static let all = try! MeterSelector(["*"])

    /// Whether the meter `name` is wanted.
    package func admits(_ name: String) -> Bool {
        if patterns.contains(where: { $0.hasPrefix("!") && Self.glob(String($0.dropFirst()), matches: name) }) {
            return false
        }
        if patterns.contains(where: { !$0.hasPrefix("!") && Self.glob($0, matches: name) }) { return true }
        return patterns.allSatisfy { $0.hasPrefix("!") }
    }

    /// The entries (without `!`) that match none of `known`: names the user probably mistyped.
    package func unmatched(among known: [String]) -> [String] {
        patterns.map { $0.hasPrefix("!") ? String($0.dropFirst()) : $0 }
            .filter { pattern in !known.contains { Self.glob(pattern, matches: $0) } }
    }

    /// fnmatch-style matching of `*` (any run) and `?` (any one character).
    static func glob(_ pattern: String, matches name: String) -> Bool {
        let p = Array(pattern.unicodeScalars), n = Array(name.unicodeScalars)
        var pi = 0, ni = 0, starP = -1, starN = 0
        while ni < n.count {
            if pi < p.count && (p[pi] == "?" || p[pi] == n[ni]) {
                pi += 1; ni += 1
            } else if pi < p.count && p[pi] == "*" {
                starP = pi; starN = ni; pi += 1
            } else if starP >= 0 {
                pi = starP + 1; starN += 1; ni = starN
            } else {
                return false
            }
        }
        while pi < p.count && p[pi] == "*" { pi += 1 }
        return pi == p.count
    }
}

/// A meter list that breaks ceilometer's rules.
package enum MeterSelectorError: Error, Equatable, CustomStringConvertible {
    case empty
    case mixedInclusionAndExclusion([String])
    case plainNamesWithWildcard([String])

    package var description: String {
        switch self {
        case .empty: return "no meters given"
        case .mixedInclusionAndExclusion(let names):
            return "meters list mixes plain names (\(names.joined(separator: ", "))) with '!' exclusions"
        case .plainNamesWithWildcard(let names):
            return "meters list has plain names (\(names.joined(separator: ", "))) next to '*'"
        }
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first?.isWhitespace == true { s.removeFirst() }
        while s.last?.isWhitespace == true { s.removeLast() }
        return String(s)
    }
}
