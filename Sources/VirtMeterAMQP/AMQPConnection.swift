import CRabbitMQ
#if canImport(Glibc)
import Glibc
#endif

/// Bytes that librabbitmq reads from for as long as this object lives (`amqp_cstring_bytes` does not copy).
final class OwnedBytes {
    let bytes: amqp_bytes_t

    init(_ text: String) {
        var copy = text
        bytes = copy.withUTF8 { buffer in
            let view = amqp_bytes_t(len: buffer.count, bytes: UnsafeMutableRawPointer(mutating: buffer.baseAddress))
            return amqp_bytes_malloc_dup(view)
        }
    }

    deinit { amqp_bytes_free(bytes) }
}

extension amqp_bytes_t {
    /// The bytes as a String (lossy UTF-8), empty for a null pointer.
    var string: String {
        guard let pointer = self.bytes, len > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: pointer, count: len), as: UTF8.self)
    }

    /// A copy of the bytes.
    var array: [UInt8] {
        guard let pointer = self.bytes, len > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: len))
    }
}

/// Calls `body` with `text` as `amqp_bytes_t` valid only inside it.
func withAMQPBytes<T>(_ text: String, _ body: (amqp_bytes_t) throws(AMQPError) -> T) throws(AMQPError) -> T {
    var copy = text
    let result: Result<T, AMQPError> = copy.withUTF8 { buffer in
        let bytes = amqp_bytes_t(len: buffer.count, bytes: UnsafeMutableRawPointer(mutating: buffer.baseAddress))
        do throws(AMQPError) {
            return .success(try body(bytes))
        } catch {
            return .failure(error)
        }
    }
    return try result.get()
}

/// One librabbitmq connection with channel 1 open. Not thread-safe and not Sendable: its owner confines it to one
/// thread (a serial queue of its own). `deinit` closes the channel and the connection and frees the state.
final class AMQPConnection {
    /// The channel every operation uses.
    static let channel: amqp_channel_t = 1

    let url: AMQPURL
    private let state: amqp_connection_state_t
    /// Whether the connection is logged in with its channel open; false once anything failed.
    private(set) var isOpen = false
    /// The last delivery tag used on the channel, in confirm mode.
    var lastDeliveryTag: UInt64 = 0
    /// The frames of the messages this connection writes itself (plain TCP), made at its first publish.
    private var frames: PublishFrames?

    /// A new, unopened connection state for `url`.
    init(url: AMQPURL) throws(AMQPError) {
        guard let state = amqp_new_connection() else {
            throw AMQPError(operation: "connect to \(url.endpoint)", message: "out of memory")
        }
        self.url = url
        self.state = state
    }

    deinit {
        if isOpen {
            _ = amqp_channel_close(state, Self.channel, Int32(AMQP_REPLY_SUCCESS))
            _ = amqp_connection_close(state, Int32(AMQP_REPLY_SUCCESS))
        }
        amqp_destroy_connection(state)
    }

    /// Opens the socket (TCP, or TLS when the URL is `amqps`), logs in with PLAIN and opens channel 1.
    /// `heartbeat` is in seconds (0: none). Throws `AMQPError` saying which step failed; never shows the password.
    func open(tls: AMQPTLSOptions?, heartbeat: Int, timeoutSeconds: Double) throws(AMQPError) {
        let connect = "connect to \(url.endpoint)"
        let socket: OpaquePointer?
        if url.tls {
            socket = amqp_ssl_socket_new(state)
            guard let socket else { throw AMQPError(operation: connect, message: "cannot create a TLS socket") }
            let options = tls ?? AMQPTLSOptions()
            if let ca = options.caFile {
                let status = amqp_ssl_socket_set_cacert(socket, ca)
                guard status == AMQP_STATUS_OK.rawValue else {
                    throw AMQPError.library(status, operation: connect, message: "cannot read the CA file \(ca)")
                }
            }
            if let cert = options.certFile {
                guard let key = options.keyFile else {
                    throw AMQPError(operation: connect, message: "a client certificate needs its key file too")
                }
                let status = amqp_ssl_socket_set_key(socket, cert, key)
                guard status == AMQP_STATUS_OK.rawValue else {
                    throw AMQPError.library(status, operation: connect,
                                            message: "cannot use the client certificate \(cert) with key \(key)")
                }
            }
            amqp_ssl_socket_set_verify_peer(socket, options.verifyPeer ? 1 : 0)
            amqp_ssl_socket_set_verify_hostname(socket, options.verifyHostname ? 1 : 0)
        } else {
            socket = amqp_tcp_socket_new(state)
            guard socket != nil else { throw AMQPError(operation: connect, message: "cannot create a socket") }
        }
        var timeout = Self.timeval(seconds: timeoutSeconds)
        _ = amqp_set_handshake_timeout(state, &timeout)
        _ = amqp_set_rpc_timeout(state, &timeout)
        let status = amqp_socket_open_noblock(socket, url.host, Int32(url.port), &timeout)
        guard status == AMQP_STATUS_OK.rawValue else {
            throw AMQPError.library(status, operation: connect, message: Self.socketMessage(status, tls: url.tls))
        }
        let login = virtmeter_amqp_login_plain(state, url.vhost, 0, 131_072, Int32(heartbeat), url.user, url.password)
        try check(login, "log in to \(url.endpoint) vhost '\(url.vhost)' as '\(url.user)'")
        _ = amqp_channel_open(state, Self.channel)
        try check(amqp_get_rpc_reply(state), "open a channel on \(url.endpoint)")
        isOpen = true
    }

    /// Puts the channel in confirm mode: the broker acks (or nacks) every message published from now on.
    func selectConfirms() throws(AMQPError) {
        _ = amqp_confirm_select(state, Self.channel)
        try check(amqp_get_rpc_reply(state), "enable publisher confirms")
        lastDeliveryTag = 0
    }

    /// Declares a topic exchange (`passive`: only checks that it exists). A 406 means it exists with other flags.
    func declareExchange(_ name: String, durable: Bool, passive: Bool = false) throws(AMQPError) {
        let operation = "declare exchange '\(name)' (topic, durable=\(durable))"
        try withAMQPBytes(name) { (exchange) throws(AMQPError) in
            try withAMQPBytes("topic") { (type) throws(AMQPError) in
                _ = amqp_exchange_declare(state, Self.channel, exchange, type, passive ? 1 : 0, durable ? 1 : 0, 0, 0,
                                          amqp_empty_table)
                do throws(AMQPError) {
                    try check(amqp_get_rpc_reply(state), operation)
                } catch where error.isPreconditionFailed {
                    throw error.explained("the broker already has this exchange with other flags; set the exchange's "
                                          + "durable option to match the deployment (\(error.message))")
                }
            }
        }
    }

    /// Declares a queue; an empty `name` makes the broker name it; `type` ("quorum") goes in its `x-queue-type`
    /// argument, nil declares a classic queue. Returns the queue's name. A 406 means it exists with other flags or
    /// arguments.
    func declareQueue(_ name: String, passive: Bool = false, durable: Bool = false, exclusive: Bool = false,
                      autoDelete: Bool = false, type: String? = nil) throws(AMQPError) -> String {
        try withAMQPBytes(name) { (queue) throws(AMQPError) -> String in
            let ok = virtmeter_amqp_queue_declare(state, Self.channel, queue, passive ? 1 : 0, durable ? 1 : 0,
                                                  exclusive ? 1 : 0, autoDelete ? 1 : 0, type)
            try check(amqp_get_rpc_reply(state), name.isEmpty ? "declare a queue" : "declare queue '\(name)'")
            return ok?.pointee.queue.string ?? name
        }
    }

    /// Deletes `queue` with whatever it holds.
    func deleteQueue(_ queue: String) throws(AMQPError) {
        try withAMQPBytes(queue) { (q) throws(AMQPError) in
            _ = amqp_queue_delete(state, Self.channel, q, 0, 0)
            try check(amqp_get_rpc_reply(state), "delete queue '\(queue)'")
        }
    }

    /// Binds `queue` to `exchange` with `routingKey`.
    func bindQueue(_ queue: String, exchange: String, routingKey: String) throws(AMQPError) {
        try withAMQPBytes(queue) { (q) throws(AMQPError) in
            try withAMQPBytes(exchange) { (e) throws(AMQPError) in
                try withAMQPBytes(routingKey) { (k) throws(AMQPError) in
                    _ = amqp_queue_bind(state, Self.channel, q, e, k, amqp_empty_table)
                    try check(amqp_get_rpc_reply(state),
                              "bind queue '\(queue)' to exchange '\(exchange)' with key '\(routingKey)'")
                }
            }
        }
    }

    /// Starts consuming `queue`; with `noAck` the broker forgets each message once sent.
    func consume(_ queue: String, noAck: Bool, exclusive: Bool) throws(AMQPError) {
        try withAMQPBytes(queue) { (q) throws(AMQPError) in
            _ = amqp_basic_consume(state, Self.channel, q, amqp_empty_bytes, 0, noAck ? 1 : 0, exclusive ? 1 : 0,
                                   amqp_empty_table)
            try check(amqp_get_rpc_reply(state), "consume queue '\(queue)'")
        }
    }

    /// Sends messages with `bodies` (does not wait for anything). Returns librabbitmq's status; non-zero means the
    /// connection is no longer usable (and any of the messages may have been cut short). On plain TCP the frames are
    /// written here, all messages at once (`PublishFrames`), on TLS by librabbitmq, one message at a time.
    func publish(_ bodies: [UnsafeRawBufferPointer], as message: OutgoingMessage, timeoutSeconds: Double) -> Int32 {
        var status = AMQP_STATUS_OK.rawValue
        if url.tls {
            var properties = message.properties
            for body in bodies where status == AMQP_STATUS_OK.rawValue {
                let bytes = amqp_bytes_t(len: body.count, bytes: UnsafeMutableRawPointer(mutating: body.baseAddress))
                status = amqp_basic_publish(state, Self.channel, message.exchange.bytes, message.routingKey.bytes, 0,
                                            0, &properties, bytes)
            }
        } else {
            if frames == nil {
                frames = message.frames(channel: Self.channel, frameMax: Int(amqp_get_frame_max(state)))
            }
            guard let frames else { return AMQP_STATUS_INVALID_PARAMETER.rawValue }
            let failure = frames.send(bodies, to: amqp_get_sockfd(state),
                                      timeoutMilliseconds: Int32(clamping: Int(timeoutSeconds * 1000)))
            status = failure == 0 ? AMQP_STATUS_OK.rawValue
                : (failure == ETIMEDOUT ? AMQP_STATUS_TIMEOUT : AMQP_STATUS_SOCKET_ERROR).rawValue
        }
        if status == AMQP_STATUS_OK.rawValue {
            lastDeliveryTag += UInt64(bodies.count)
        } else {
            isOpen = false
        }
        return status
    }

    /// What the broker sent while we waited.
    enum Event {
        case ack(tag: UInt64, multiple: Bool)
        case nack(tag: UInt64, multiple: Bool)
        /// The broker stopped taking messages (a memory or disk alarm), and why.
        case blocked(reason: String)
        /// The broker takes messages again.
        case unblocked
        /// Nothing arrived before the timeout.
        case timeout
        /// Another frame (a heartbeat, a returned message): nothing to act on.
        case other
    }

    /// Waits up to `seconds` for the next frame and services heartbeats meanwhile. A channel or connection close
    /// from the broker, or a socket error, marks the connection closed and throws.
    func nextEvent(timeoutSeconds seconds: Double) throws(AMQPError) -> Event {
        var frame = amqp_frame_t()
        var timeout = Self.timeval(seconds: seconds)
        let status = amqp_simple_wait_frame_noblock(state, &frame, &timeout)
        defer { amqp_maybe_release_buffers(state) }
        if status == AMQP_STATUS_TIMEOUT.rawValue { return .timeout }
        guard status == AMQP_STATUS_OK.rawValue else {
            isOpen = false
            throw AMQPError.library(status, operation: "wait for the broker on \(url.endpoint)",
                                    message: "connection lost: " + String(cString: amqp_error_string2(status)))
        }
        guard frame.frame_type == UInt8(AMQP_FRAME_METHOD) else { return .other }
        let method = frame.payload.method
        switch method.id {
        case virtmeter_amqp_basic_ack:
            let ack = method.decoded.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
            return .ack(tag: ack.delivery_tag, multiple: ack.multiple != 0)
        case virtmeter_amqp_basic_nack:
            let nack = method.decoded.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
            return .nack(tag: nack.delivery_tag, multiple: nack.multiple != 0)
        case virtmeter_amqp_connection_blocked:
            let blocked = method.decoded.assumingMemoryBound(to: amqp_connection_blocked_t.self).pointee
            return .blocked(reason: String(decoding: UnsafeRawBufferPointer(start: blocked.reason.bytes,
                                                                              count: blocked.reason.len),
                                           as: UTF8.self))
        case virtmeter_amqp_connection_unblocked:
            return .unblocked
        case virtmeter_amqp_channel_close, virtmeter_amqp_connection_close:
            throw closed(by: method, operation: "wait for the broker on \(url.endpoint)")
        default:
            return .other
        }
    }

    /// Waits up to `seconds` for the next delivery of a consumer; nil on timeout. Heartbeats are serviced while it
    /// waits. A close from the broker or a lost connection throws.
    func nextDelivery(timeoutSeconds seconds: Double) throws(AMQPError) -> AMQPDelivery? {
        var envelope = amqp_envelope_t()
        var timeout = Self.timeval(seconds: seconds)
        amqp_maybe_release_buffers(state)
        let reply = amqp_consume_message(state, &envelope, &timeout, 0)
        if reply.reply_type == AMQP_RESPONSE_NORMAL {
            defer { amqp_destroy_envelope(&envelope) }
            let p = envelope.message.properties
            func has(_ flag: Int32) -> Bool { p._flags & amqp_flags_t(flag) != 0 }
            let properties = AMQPProperties(
                contentType: has(AMQP_BASIC_CONTENT_TYPE_FLAG) ? p.content_type.string : nil,
                contentEncoding: has(AMQP_BASIC_CONTENT_ENCODING_FLAG) ? p.content_encoding.string : nil,
                deliveryMode: has(AMQP_BASIC_DELIVERY_MODE_FLAG) ? Int(p.delivery_mode) : nil,
                priority: has(AMQP_BASIC_PRIORITY_FLAG) ? Int(p.priority) : nil)
            return AMQPDelivery(body: envelope.message.body.array, exchange: envelope.exchange.string,
                                routingKey: envelope.routing_key.string, deliveryTag: envelope.delivery_tag,
                                properties: properties)
        }
        if reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION, reply.library_error == AMQP_STATUS_TIMEOUT.rawValue {
            return nil
        }
        if reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION,
           reply.library_error == AMQP_STATUS_UNEXPECTED_STATE.rawValue {
            // A frame other than a delivery is waiting: read it, and see whether the broker is closing.
            switch try nextEvent(timeoutSeconds: 0) {
            case .ack, .nack, .blocked, .unblocked, .timeout, .other: return nil
            }
        }
        try check(reply, "consume from \(url.endpoint)")
        return nil
    }

    /// Throws an `AMQPError` for `reply` unless it is normal; a close from the broker is answered and closes us.
    func check(_ reply: amqp_rpc_reply_t, _ operation: String) throws(AMQPError) {
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            isOpen = false
            let status = reply.library_error
            var message = String(cString: amqp_error_string2(status))
            if status == AMQP_STATUS_CONNECTION_CLOSED.rawValue || status == AMQP_STATUS_SOCKET_ERROR.rawValue {
                message = "the broker closed the connection (\(message))"
            }
            throw AMQPError.library(status, operation: operation, message: message)
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            throw closed(by: reply.reply, operation: operation)
        default:
            isOpen = false
            throw AMQPError(operation: operation, message: "no reply from the broker")
        }
    }

    /// The error for a channel.close or connection.close from the broker, after answering it.
    private func closed(by method: amqp_method_t, operation: String) -> AMQPError {
        isOpen = false
        switch method.id {
        case virtmeter_amqp_connection_close:
            let close = method.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            var ok = amqp_connection_close_ok_t()
            _ = amqp_send_method(state, 0, virtmeter_amqp_connection_close_ok, &ok)
            return AMQPError.closed(connection: true, replyCode: Int(close.reply_code), operation: operation,
                                    message: close.reply_text.string)
        case virtmeter_amqp_channel_close:
            let close = method.decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            var ok = amqp_channel_close_ok_t()
            _ = amqp_send_method(state, Self.channel, virtmeter_amqp_channel_close_ok, &ok)
            return AMQPError.closed(connection: false, replyCode: Int(close.reply_code), operation: operation,
                                    message: close.reply_text.string)
        default:
            return AMQPError(operation: operation, message: "unexpected method \(method.id) from the broker")
        }
    }

    static func socketMessage(_ status: Int32, tls: Bool) -> String {
        let text = String(cString: amqp_error_string2(status))
        switch status {
        case AMQP_STATUS_SSL_PEER_VERIFY_FAILED.rawValue:
            return "TLS: the broker's certificate is not signed by the given CA (\(text)); check the CA file"
        case AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED.rawValue:
            return "TLS: the broker's certificate does not name this host (\(text)); connect with the name it has"
        case AMQP_STATUS_SSL_CONNECTION_FAILED.rawValue, AMQP_STATUS_SSL_ERROR.rawValue:
            return "TLS handshake failed (\(text)); check the CA file and that the port speaks TLS"
        case AMQP_STATUS_SOCKET_ERROR.rawValue, AMQP_STATUS_TCP_ERROR.rawValue:
            return "cannot reach the broker (\(text): \(String(cString: strerror(errno))))"
        case AMQP_STATUS_TIMEOUT.rawValue:
            return "cannot reach the broker (timed out)"
        default:
            return tls ? "TLS connection failed (\(text))" : text
        }
    }

    static func timeval(seconds: Double) -> timeval {
        let clamped = max(0, seconds)
        return Glibc.timeval(tv_sec: Int(clamped), tv_usec: Int((clamped - clamped.rounded(.down)) * 1_000_000))
    }
}

/// The AMQP basic properties virtmeter sets and checks.
package struct AMQPProperties: Sendable, Equatable {
    /// `application/json` for notifications.
    package var contentType: String?
    /// `utf-8` for notifications.
    package var contentEncoding: String?
    /// 2: persistent.
    package var deliveryMode: Int?
    /// 0 for notifications.
    package var priority: Int?

    /// Properties with the given values (nil: not set).
    package init(contentType: String?, contentEncoding: String?, deliveryMode: Int?, priority: Int?) {
        self.contentType = contentType
        self.contentEncoding = contentEncoding
        self.deliveryMode = deliveryMode
        self.priority = priority
    }
}
