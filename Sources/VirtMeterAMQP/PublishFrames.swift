import CRabbitMQ
import VirtMeterCore
#if canImport(Glibc)
import Glibc
#endif

/// A `basic.publish` as the AMQP 0-9-1 frames it is on the wire, for the publisher to write to a plain TCP
/// connection's socket itself.
///
/// librabbitmq's `amqp_basic_publish` copies every body into a frame buffer of its own and makes a system call for
/// each frame, and the bodies are nearly all the bytes the agent sends. Written here, several messages are one
/// `sendmsg` of their method and header frames, the body frames' headers and ends, and the bodies, which go to the
/// socket from the caller's buffers. librabbitmq still reads the socket (confirms, heartbeats) and writes to it only
/// between sends, on the same thread. A TLS connection publishes through librabbitmq.
struct PublishFrames {
    /// The method frame (basic.publish: exchange, routing key, neither mandatory nor immediate) and the content header
    /// frame (class basic, the properties), with the header's body size still to fill in at `bodySizeOffset`.
    private let head: [UInt8]
    private let bodySizeOffset: Int
    private let channel: UInt16
    /// The most body bytes one frame carries: the negotiated frame_max less a frame's header (7 bytes) and end (1).
    let maxFramePayload: Int

    /// The frames for messages to `exchange` with `routingKey` on `channel`, with the content type and encoding, the
    /// delivery mode and the priority the publisher sets. Nil when a name does not fit an AMQP short string (255
    /// bytes) or `frameMax` leaves no room for a body.
    init?(channel: UInt16, exchange: String, routingKey: String, contentType: String, contentEncoding: String,
          deliveryMode: UInt8, priority: UInt8, frameMax: Int) {
        guard frameMax > 8,
              let exchange = Self.shortString(exchange), let routingKey = Self.shortString(routingKey),
              let contentType = Self.shortString(contentType), let contentEncoding = Self.shortString(contentEncoding)
        else { return nil }
        var method: [UInt8] = []
        Self.add(UInt16(AMQP_BASIC_CLASS), to: &method)
        Self.add(UInt16(truncatingIfNeeded: AMQP_BASIC_PUBLISH_METHOD), to: &method)
        Self.add(UInt16(0), to: &method)   // reserved (ticket)
        method += exchange + routingKey
        method.append(0)                    // mandatory, immediate: off
        var header: [UInt8] = []
        Self.add(UInt16(AMQP_BASIC_CLASS), to: &header)
        Self.add(UInt16(0), to: &header)   // weight
        let sizeInHeader = header.count
        Self.add(UInt64(0), to: &header)   // body size, per message
        Self.add(UInt16(AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_CONTENT_ENCODING_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG
                        | AMQP_BASIC_PRIORITY_FLAG), to: &header)
        header += contentType + contentEncoding + [deliveryMode, priority]
        var head = Self.frame(UInt8(AMQP_FRAME_METHOD), channel: channel, payload: method)
        bodySizeOffset = head.count + 7 + sizeInHeader
        head += Self.frame(UInt8(AMQP_FRAME_HEADER), channel: channel, payload: header)
        self.head = head
        self.channel = channel
        maxFramePayload = frameMax - 8
    }

    /// Writes the messages with `bodies` to `socket`, all of them, in as few `sendmsg` calls as the socket takes
    /// (continuing after partial writes, waiting up to `timeoutMilliseconds` each time the socket takes nothing). A
    /// call per message made TCP end each message with a short segment, twice the segments (and the broker's
    /// wake-ups) for the same bytes. Returns 0, or the errno of the failure (ETIMEDOUT for the wait): the connection
    /// is then unusable, as a message may be cut short on it.
    func send(_ bodies: [UnsafeRawBufferPointer], to socket: Int32, timeoutMilliseconds: Int32) -> Int32 {
        // The bytes around the bodies' pieces, back to back: each message's head and first body frame's header,
        // then for each further frame the previous one's end and its header, then the last frame's end (which lies
        // just before the next message's head, so the two go out as one piece).
        var joints: [UInt8] = []
        // Where each piece lies: in `joints` (`body` nil) or in a body.
        var pieces: [(body: Int?, range: Range<Int>)] = []
        var jointStart = 0
        for (index, body) in bodies.enumerated() {
            let frames = (body.count + maxFramePayload - 1) / maxFramePayload
            let messageStart = joints.count
            joints += head
            joints.withUnsafeMutableBytes {
                $0.storeBytes(of: UInt64(body.count).bigEndian, toByteOffset: messageStart + bodySizeOffset,
                              as: UInt64.self)
            }
            for frame in 0..<frames {
                if frame > 0 { joints.append(UInt8(AMQP_FRAME_END)) }
                let start = frame * maxFramePayload, size = min(maxFramePayload, body.count - start)
                joints.append(UInt8(AMQP_FRAME_BODY))
                Self.add(channel, to: &joints)
                Self.add(UInt32(size), to: &joints)
                pieces.append((nil, jointStart..<joints.count))
                pieces.append((index, start..<start + size))
                jointStart = joints.count
            }
            if frames > 0 { joints.append(UInt8(AMQP_FRAME_END)) }
        }
        if jointStart < joints.count { pieces.append((nil, jointStart..<joints.count)) }
        return joints.withUnsafeBytes { joint in
            var pieces = pieces.map { piece in
                let base = piece.body.map { bodies[$0].baseAddress! } ?? joint.baseAddress!
                return iovec(iov_base: UnsafeMutableRawPointer(mutating: base + piece.range.lowerBound),
                             iov_len: piece.range.count)
            }
            let sent = writeAll(&pieces) { pieces, count in
                var message = msghdr()
                message.msg_iov = UnsafeMutablePointer(mutating: pieces)
                message.msg_iovlen = Int(count)
                let sent = sendmsg(socket, &message, Int32(MSG_NOSIGNAL))
                guard sent < 0, errno == EAGAIN || errno == EWOULDBLOCK else { return sent }
                // The socket's buffer is full (librabbitmq keeps it non-blocking): wait until it takes more.
                var ready = pollfd(fd: socket, events: Int16(POLLOUT), revents: 0)
                switch poll(&ready, 1, timeoutMilliseconds) {
                case 0:
                    errno = ETIMEDOUT
                    return -1
                case 1...: return 0
                default: return errno == EINTR ? 0 : -1
                }
            }
            return sent ? 0 : errno
        }
    }

    /// A frame: type, channel, payload size (big endian), payload, frame end.
    static func frame(_ type: UInt8, channel: UInt16, payload: [UInt8]) -> [UInt8] {
        var frame = [type]
        add(channel, to: &frame)
        add(UInt32(payload.count), to: &frame)
        return frame + payload + [UInt8(AMQP_FRAME_END)]
    }

    private static func shortString(_ text: String) -> [UInt8]? {
        let bytes = Array(text.utf8)
        return bytes.count <= 255 ? [UInt8(bytes.count)] + bytes : nil
    }

    private static func add<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { bytes += $0 }
    }
}

/// Where the publisher's messages go and the properties they carry: `application/json`, `utf-8`, persistent,
/// priority 0, as oslo.messaging sends notifications.
final class OutgoingMessage {
    let exchange: OwnedBytes
    let routingKey: OwnedBytes
    private let contentType = OwnedBytes("application/json")
    private let contentEncoding = OwnedBytes("utf-8")
    private let deliveryMode: UInt8 = 2
    private let priority: UInt8 = 0

    init(exchange: String, routingKey: String) {
        self.exchange = OwnedBytes(exchange)
        self.routingKey = OwnedBytes(routingKey)
    }

    /// The properties for `amqp_basic_publish` (the TLS path); they point into this object's bytes.
    var properties: amqp_basic_properties_t {
        var properties = amqp_basic_properties_t()
        properties._flags = amqp_flags_t(AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_CONTENT_ENCODING_FLAG
                                         | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_PRIORITY_FLAG)
        properties.content_type = contentType.bytes
        properties.content_encoding = contentEncoding.bytes
        properties.delivery_mode = deliveryMode
        properties.priority = priority
        return properties
    }

    /// The same message as frames written by the publisher (the plain TCP path).
    func frames(channel: UInt16, frameMax: Int) -> PublishFrames? {
        PublishFrames(channel: channel, exchange: exchange.bytes.string, routingKey: routingKey.bytes.string,
                      contentType: contentType.bytes.string, contentEncoding: contentEncoding.bytes.string,
                      deliveryMode: deliveryMode, priority: priority, frameMax: frameMax)
    }
}
