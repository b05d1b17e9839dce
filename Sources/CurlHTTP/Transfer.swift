import CCurl
import Foundation
import Synchronization

/// One request in flight: its easy handle, what has arrived, and whom to tell.
///
/// Confined to the loop thread once submitted, except `cancelled`, which any thread may set.
final class Transfer: @unchecked Sendable {
    enum Mode {
        case collect(CheckedContinuation<HTTPResponse, any Error>)
        case stream(head: CheckedContinuation<(Int, HTTPHeaders), any Error>?, channel: BodyChannel)
        case done
    }

    let request: HTTPRequest
    let userAgent: String
    var mode: Mode = .done
    var easy: UnsafeMutableRawPointer?
    var headerList: UnsafeMutablePointer<curl_slist>?
    var connectList: UnsafeMutablePointer<curl_slist>?
    /// Set when the body outgrew `request.maxResponseBytes`.
    var tooLarge = false
    let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)

    var status = 0
    var headers = HTTPHeaders()
    var headComplete = false
    var body = Data()
    /// Set while curl holds the transfer paused because the stream's reader is behind.
    var paused = false

    let cancelled = Atomic<Bool>(false)

    init(request: HTTPRequest, userAgent: String) {
        self.request = request
        self.userAgent = userAgent
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
    }

    deinit {
        errorBuffer.deallocate()
    }

    /// Asks the loop to abort the transfer; safe from any thread, any number of times.
    func cancel(via loop: CurlMultiLoop) {
        if cancelled.exchange(true, ordering: .acquiringAndReleasing) == false {
            loop.submit(.cancel(self))
        }
    }

    // MARK: Loop-thread only

    /// A header line as curl hands it over, CRLF included.
    ///
    /// Read as bytes: only a field's name and value become strings (a string per line, and
    /// Foundation's trimming before that, cost more than the rest of a small exchange).
    func receiveHeaderLine(_ line: UnsafeRawBufferPointer) {
        let line = Self.trimmed(line[...])
        if line.starts(with: "HTTP/".utf8) {
            // A new response head (after a 1xx or a redirect): start over.
            let parts = line.split(separator: 0x20, maxSplits: 2)
            status = parts.count > 1 ? Int(String(decoding: parts[1], as: UTF8.self)) ?? 0 : 0
            headers = HTTPHeaders()
            headComplete = false
        } else if line.isEmpty {
            if status >= 200 {
                headComplete = true
                deliverHead()
            }
        } else if let colon = line.firstIndex(of: UInt8(ascii: ":")) {
            let name = String(decoding: line[..<colon], as: UTF8.self)
            let value = String(decoding: Self.trimmed(line[(colon + 1)...]), as: UTF8.self)
            headers.add(name, value)
        }
    }

    /// `bytes` without leading and trailing spaces, tabs, CR and LF.
    static func trimmed(_ bytes: Slice<UnsafeRawBufferPointer>) -> Slice<UnsafeRawBufferPointer> {
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D || $0 == 0x0A }
        guard let first = bytes.firstIndex(where: { !isSpace($0) }) else { return bytes[bytes.endIndex...] }
        let last = bytes.lastIndex(where: { !isSpace($0) })!
        return bytes[first...last]
    }

    /// Body bytes; returns false when the transfer must pause because the reader is behind.
    func receiveBody(_ bytes: UnsafeRawBufferPointer) -> Bool {
        switch mode {
        case .collect:
            if let limit = request.maxResponseBytes, body.count + bytes.count > limit {
                tooLarge = true
                return true
            }
            body.append(contentsOf: bytes)
            return true
        case .stream(_, let channel):
            deliverHead()
            return channel.offer(Data(bytes))
        case .done:
            return true
        }
    }

    /// Resumes a streaming caller once the head is known.
    private func deliverHead() {
        guard case .stream(let head?, let channel) = mode else { return }
        mode = .stream(head: nil, channel: channel)
        head.resume(returning: (status, headers))
    }

    /// Ends the transfer: resumes whoever waits, exactly once.
    func finish(_ result: Result<Bool, any Error>) {
        let current = mode
        mode = .done
        switch current {
        case .collect(let continuation):
            switch result {
            case .success(let reused):
                continuation.resume(returning: HTTPResponse(status: status, headers: headers, body: body, reusedConnection: reused))
            case .failure(let error):
                continuation.resume(throwing: error)
            }
        case .stream(let head, let channel):
            switch result {
            case .success:
                head?.resume(returning: (status, headers))
                channel.finish(nil)
            case .failure(let error):
                head?.resume(throwing: error)
                channel.finish(error)
            }
        case .done:
            break
        }
    }
}
