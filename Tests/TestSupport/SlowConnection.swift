import Foundation

/// A raw TCP connection to 127.0.0.1 that sends its bytes slowly: a client a server should
/// not wait for forever.
public final class SlowConnection: @unchecked Sendable {
    private let socket: Int32

    public init(port: Int) throws {
        socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port)).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            Foundation.close(socket)
            throw ServiceProcess.Failure(description: "could not connect to 127.0.0.1:\(port)")
        }
    }

    /// Sends `bytes` one at a time, `every` apart. Returns how many were sent when the server
    /// closed the connection, or nil if it never did.
    public func trickle(_ bytes: [UInt8], every interval: Duration) async throws -> Int? {
        for (index, byte) in bytes.enumerated() {
            if isClosedByPeer { return index }
            var value = byte
            if send(socket, &value, 1, Int32(MSG_NOSIGNAL)) != 1 { return index }
            try await Task.sleep(for: interval)
        }
        return isClosedByPeer ? bytes.count : nil
    }

    /// Sends a request head to `port` one byte every 200 ms, through a header that never
    /// ends (about 40 s to arrive whole); returns how many bytes were sent when the server
    /// closed the connection, or nil if it never did.
    public static func headerBytesBeforeCutOff(port: Int, requestLine: String = "GET /health HTTP/1.1") async throws -> Int? {
        let connection = try SlowConnection(port: port)
        defer { connection.close() }
        let head = Array("\(requestLine)\r\nHost: x\r\nX-Slow: ".utf8)
        return try await connection.trickle(head + Array(repeating: UInt8(ascii: "a"), count: 200), every: .milliseconds(200))
    }

    /// Sends `bytes` at once.
    public func write(_ bytes: [UInt8]) {
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { return }
            sent += count
        }
    }

    /// Reads until `count` HTTP/1.1 responses have arrived in all (counting their status lines),
    /// or the server closed the connection, or `timeout` passed. Returns the count.
    public func awaitResponses(_ count: Int, timeout: Duration = .seconds(10)) -> Int {
        let deadline = ContinuousClock.now + timeout
        while responses < count, ContinuousClock.now < deadline {
            var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, 100) > 0 else { continue }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let read = recv(socket, &buffer, buffer.count, 0)
            guard read > 0 else { break }
            received += buffer[..<read]
            responses = String(decoding: received, as: UTF8.self).components(separatedBy: "HTTP/1.1 ").count - 1
        }
        return responses
    }

    private var received: [UInt8] = []
    private var responses = 0

    /// Whether the server has closed its side (reading gives end of file or an error).
    public var isClosedByPeer: Bool {
        var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        guard poll(&descriptor, 1, 0) > 0 else { return false }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = recv(socket, &buffer, buffer.count, Int32(MSG_DONTWAIT))
        return count <= 0 || descriptor.revents & Int16(POLLHUP | POLLERR) != 0
    }

    public func close() {
        Foundation.close(socket)
    }
}
