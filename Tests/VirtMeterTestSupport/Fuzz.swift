/// Applies byte edits to `base`: each edit is a position (taken modulo the length), a byte, and whether to replace,
/// insert or delete there. Mutating a valid input reaches deep into a parser; random bytes alone rarely do.
package func mutate(_ base: [UInt8], positions: [Int], bytes: [UInt8]) -> [UInt8] {
    var data = base
    for (index, position) in positions.enumerated() {
        let byte = bytes.isEmpty ? 0 : bytes[index % bytes.count]
        let at = data.isEmpty ? 0 : position % data.count
        switch position % 3 {
        case 0 where !data.isEmpty: data[at] = byte
        case 1: data.insert(byte, at: at)
        default: if !data.isEmpty { data.remove(at: at) }
        }
    }
    if let cut = positions.first, cut % 5 == 0, !data.isEmpty { data.removeLast(cut % data.count) }
    return data
}
