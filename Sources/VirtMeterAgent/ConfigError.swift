/// A configuration file that cannot be used: the file, the line (when known), the key and what is wrong.
/// Its description is the one line virtmeter prints before it refuses to start.
package struct ConfigError: Error, CustomStringConvertible, Equatable {
    package let file: String
    package let line: Int?
    package let key: String?
    package let message: String

    package init(file: String, line: Int? = nil, key: String? = nil, message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    package var description: String {
        var text = file
        if let line { text += ":\(line)" }
        if let key { text += ": \(key)" }
        return text + ": " + message
    }
}
