import Foundation
import Testing
@testable import VirtMeterAMQP

/// The frames the publisher writes itself, read back from the other end of a socket that takes a few KB at a time
/// (no broker needed: the frame layout is checked byte by byte here, the broker's acceptance in PublishTests).
@Suite("PublishFrames on a slow socket")
struct PublishFramesTests {
    static func frames(frameMax: Int = 4_096) throws -> PublishFrames {
        try #require(PublishFrames(channel: 1, exchange: "ex", routingKey: "topic.sample",
                                   contentType: "application/json", contentEncoding: "utf-8", deliveryMode: 2,
                                   priority: 0, frameMax: frameMax))
    }

    /// A connected pair: the writer's end non-blocking (as librabbitmq leaves its socket) with a small send buffer.
    static func socketPair() throws -> (writer: Int32, reader: Int32) {
        var ends: [Int32] = [0, 0]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &ends) == 0)
        var size: Int32 = 4_096
        setsockopt(ends[0], SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        _ = fcntl(ends[0], F_SETFL, fcntl(ends[0], F_GETFL) | O_NONBLOCK)
        return (ends[0], ends[1])
    }

    @Test("method, header and body frames around each body, messages in order, whole through partial writes")
    func layout() throws {
        let frames = try Self.frames()
        let (writer, reader) = try Self.socketPair()
        defer { close(reader) }
        // Several messages in one call: a large one, an empty one, one of exactly one frame, one just over.
        let bodies = [50_000, 0, 4_088, 4_089].enumerated().map { message, count in
            (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3 &+ message) }
        }
        // Read slowly on another thread, so that the writer finds the socket full again and again.
        let collected = ReadBack()
        let thread = Thread {
            var chunk = [UInt8](repeating: 0, count: 1_500)
            while true {
                let count = chunk.withUnsafeMutableBytes { read(reader, $0.baseAddress, $0.count) }
                if count <= 0 { break }
                collected.append(chunk[..<count])
                usleep(200)
            }
            collected.finish()
        }
        thread.start()
        let status = bodies[0].withUnsafeBytes { b0 in
            bodies[1].withUnsafeBytes { b1 in
                bodies[2].withUnsafeBytes { b2 in
                    bodies[3].withUnsafeBytes { b3 in frames.send([b0, b1, b2, b3], to: writer,
                                                                   timeoutMilliseconds: 5_000) }
                }
            }
        }
        close(writer)
        #expect(status == 0)
        let bytes = collected.wait()

        var position = 0
        func frame() throws -> (type: UInt8, channel: Int, payload: [UInt8]) {
            try #require(position + 8 <= bytes.count)
            let size = bytes[(position + 3)..<(position + 7)].reduce(0) { $0 << 8 | Int($1) }
            try #require(position + 8 + size <= bytes.count)
            defer { position += 8 + size }
            #expect(bytes[position + 7 + size] == 0xCE)
            return (bytes[position], Int(bytes[position + 1]) << 8 | Int(bytes[position + 2]),
                    Array(bytes[(position + 7)..<(position + 7 + size)]))
        }
        for body in bodies {
            let method = try frame()
            #expect(method.type == 1 && method.channel == 1)
            #expect(method.payload == [0, 60, 0, 40, 0, 0, 2] + Array("ex".utf8) + [12] + Array("topic.sample".utf8)
                    + [0])
            let header = try frame()
            #expect(header.type == 2 && header.channel == 1)
            let size = withUnsafeBytes(of: UInt64(body.count).bigEndian, Array.init)
            #expect(header.payload == [0, 60, 0, 0] + size + [0xD8, 0x00, 16] + Array("application/json".utf8) + [5]
                    + Array("utf-8".utf8) + [2, 0])
            var content: [UInt8] = [], bodyFrames = 0
            while content.count < body.count {
                let next = try frame()
                #expect(next.type == 3 && next.channel == 1 && next.payload.count <= 4_096 - 8)
                content += next.payload
                bodyFrames += 1
            }
            #expect(content == body)
            #expect(bodyFrames == (body.count + 4_087) / 4_088)   // 50,000 bytes in 13 frames of 4,088
        }
        #expect(position == bytes.count)
    }

    @Test("a socket that takes nothing for the timeout: ETIMEDOUT")
    func timeout() throws {
        let frames = try Self.frames()
        let (writer, reader) = try Self.socketPair()
        defer { close(writer); close(reader) }
        let body = [UInt8](repeating: 65, count: 4 << 20)
        let started = Date()
        let status = body.withUnsafeBytes { frames.send([$0], to: writer, timeoutMilliseconds: 200) }
        #expect(status == ETIMEDOUT)
        #expect(Date().timeIntervalSince(started) < 5)
    }
}

/// Bytes read on one thread, waited for on another.
private final class ReadBack: @unchecked Sendable {
    private let lock = NSCondition()
    private var bytes: [UInt8] = []
    private var done = false

    func append(_ chunk: ArraySlice<UInt8>) {
        lock.lock()
        bytes += chunk
        lock.unlock()
    }

    func finish() {
        lock.lock()
        done = true
        lock.signal()
        lock.unlock()
    }

    func wait() -> [UInt8] {
        lock.lock()
        defer { lock.unlock() }
        while !done { lock.wait() }
        return bytes
    }
}
