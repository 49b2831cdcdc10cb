#if canImport(Glibc)
import Glibc
#endif

/// Writes every byte that `pieces` point to with `write`, which is given the pieces left (at most 1,024 of them,
/// Linux's IOV_MAX) and returns how many bytes it wrote, or -1 with errno set. A partial write goes on where it
/// stopped, an interrupted one (EINTR) is tried again, and 0 bytes is no progress, tried again. Returns false, with
/// errno set, when `write` fails otherwise. The spool's `pwritev` and the AMQP publisher's `sendmsg` both use it.
package func writeAll(_ pieces: inout [iovec], with write: (UnsafePointer<iovec>, Int32) -> Int) -> Bool {
    var first = 0
    return pieces.withUnsafeMutableBufferPointer { pieces in
        while first < pieces.count {
            let written = write(pieces.baseAddress! + first, Int32(min(pieces.count - first, 1024)))
            if written < 0 {
                if errno == EINTR { continue }
                return false
            }
            var left = written
            while first < pieces.count, left >= pieces[first].iov_len {
                left -= pieces[first].iov_len
                first += 1
            }
            if left > 0 {
                pieces[first].iov_base += left
                pieces[first].iov_len -= left
            }
        }
        return true
    }
}
