import CCurl
import Foundation
import Synchronization

/// libcurl is initialised once per process, before any handle exists.
private let curlGlobalInit: CURLcode = ccurl_global_init()

/// The thread that owns a curl multi handle and drives every transfer on it.
///
/// Other threads talk to it only through `submit`, which queues a command and wakes the
/// thread from `curl_multi_poll`. Everything else here runs on that thread alone.
final class CurlMultiLoop: @unchecked Sendable {
    enum Command {
        case start(Transfer)
        case cancel(Transfer)
        case resume(Transfer)
        case shutdown
    }

    private struct Inbox {
        var commands: [Command] = []
        var closed = false
    }

    private let inbox = Mutex(Inbox())
    private let multi: UnsafeMutableRawPointer
    // Loop-thread state.
    private var active: [UnsafeMutableRawPointer: Transfer] = [:]
    private var idleHandles: [UnsafeMutableRawPointer] = []
    private var running = true

    init(maxConnections: Int) {
        precondition(curlGlobalInit == CURLE_OK, "curl_global_init failed")
        guard let multi = curl_multi_init() else { fatalError("curl_multi_init failed") }
        self.multi = multi
        _ = ccurl_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, maxConnections)
        let thread = Thread { [self] in self.run() }
        thread.name = "curl-multi"
        thread.start()
    }

    /// Queues a command for the loop thread. After shutdown, new transfers fail at once.
    func submit(_ command: Command) {
        let accepted = inbox.withLock { inbox -> Bool in
            guard !inbox.closed else { return false }
            inbox.commands.append(command)
            if case .shutdown = command { inbox.closed = true }
            return true
        }
        if accepted {
            curl_multi_wakeup(multi)
        } else if case .start(let transfer) = command {
            transfer.finish(.failure(CurlError.shutDown))
        }
    }

    // MARK: Loop thread

    private func run() {
        while running {
            let commands = inbox.withLock { inbox in
                defer { inbox.commands.removeAll(keepingCapacity: true) }
                return inbox.commands
            }
            for command in commands { handle(command) }
            guard running else { break }

            var stillRunning: Int32 = 0
            curl_multi_perform(multi, &stillRunning)
            collectFinished()
            curl_multi_poll(multi, nil, 0, 1000, nil)
        }
        for (_, transfer) in active { end(transfer, .failure(CurlError.shutDown)) }
        for easy in idleHandles { curl_easy_cleanup(easy) }
        idleHandles.removeAll()
        curl_multi_cleanup(multi)
    }

    private func handle(_ command: Command) {
        switch command {
        case .start(let transfer):
            if transfer.cancelled.load(ordering: .acquiring) {
                transfer.finish(.failure(CancellationError()))
            } else {
                start(transfer)
            }
        case .cancel(let transfer):
            if let easy = transfer.easy, active[easy] != nil {
                end(transfer, .failure(CancellationError()))
            }
        case .resume(let transfer):
            if let easy = transfer.easy, active[easy] != nil, transfer.paused {
                transfer.paused = false
                ccurl_easy_unpause(easy)
            }
        case .shutdown:
            running = false
        }
    }

    private func start(_ transfer: Transfer) {
        let easy: UnsafeMutableRawPointer
        if let reused = idleHandles.popLast() {
            easy = reused
        } else if let created = curl_easy_init() {
            easy = created
        } else {
            transfer.finish(.failure(CurlError.transport("curl_easy_init failed", curlCode: 0)))
            return
        }
        transfer.easy = easy
        if let problem = configure(easy, for: transfer) {
            release(easy, of: transfer)
            transfer.finish(.failure(problem))
            return
        }
        active[easy] = transfer
        curl_multi_add_handle(multi, easy)
    }

    /// Sets every option of a transfer; returns an error for a request curl cannot take.
    private func configure(_ easy: UnsafeMutableRawPointer, for transfer: Transfer) -> CurlError? {
        let request = transfer.request
        guard request.url.hasPrefix("http://") || request.url.hasPrefix("https://") else {
            return .invalidRequest("URL must start with http:// or https:// (got '\(request.url.prefix(80))')")
        }
        let opaque = Unmanaged.passUnretained(transfer).toOpaque()
        var code = ccurl_easy_setopt_string(easy, CURLOPT_URL, request.url)
        guard code == CURLE_OK else { return .invalidRequest("invalid URL '\(request.url.prefix(80))'", curlCode: Int(code.rawValue)) }
        _ = ccurl_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1)
        _ = ccurl_easy_setopt_pointer(easy, CURLOPT_ERRORBUFFER, transfer.errorBuffer)
        _ = ccurl_easy_setopt_data_callback(easy, CURLOPT_WRITEFUNCTION, curlWriteCallback)
        _ = ccurl_easy_setopt_pointer(easy, CURLOPT_WRITEDATA, opaque)
        _ = ccurl_easy_setopt_data_callback(easy, CURLOPT_HEADERFUNCTION, curlHeaderCallback)
        _ = ccurl_easy_setopt_pointer(easy, CURLOPT_HEADERDATA, opaque)
        _ = ccurl_easy_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, milliseconds(request.connectTimeout))
        _ = ccurl_easy_setopt_long(easy, CURLOPT_TIMEOUT_MS, request.timeout.map(milliseconds) ?? 0)
        _ = ccurl_easy_setopt_long(easy, CURLOPT_TCP_NODELAY, 1)
        _ = ccurl_easy_setopt_long(easy, CURLOPT_TCP_KEEPALIVE, 1)
        if let caFile = request.caFile { _ = ccurl_easy_setopt_string(easy, CURLOPT_CAINFO, caFile) }
        if let address = request.pinnedAddress, let parts = URLComponents(string: request.url), let host = parts.host {
            let port = parts.port ?? (parts.scheme == "https" ? 443 : 80)
            transfer.connectList = curl_slist_append(nil, "\(host):\(port):\(address):\(port)")
            _ = ccurl_easy_setopt_slist(easy, CURLOPT_CONNECT_TO, transfer.connectList)
            _ = ccurl_easy_setopt_long(easy, CURLOPT_FRESH_CONNECT, 1)
            _ = ccurl_easy_setopt_long(easy, CURLOPT_FORBID_REUSE, 1)
        }

        switch request.method {
        case .get:
            _ = ccurl_easy_setopt_long(easy, CURLOPT_HTTPGET, 1)
        case .head:
            _ = ccurl_easy_setopt_long(easy, CURLOPT_NOBODY, 1)
        case .post:
            _ = ccurl_easy_setopt_long(easy, CURLOPT_POST, 1)
        case .put, .patch, .delete:
            _ = ccurl_easy_setopt_string(easy, CURLOPT_CUSTOMREQUEST, request.method.rawValue)
        }
        if let body = request.body {
            // The size first, so that COPYPOSTFIELDS copies binary data whole.
            _ = ccurl_easy_setopt_off(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.count))
            code = body.withUnsafeBytes { raw in
                ccurl_easy_setopt_pointer(easy, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: raw.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!))
            }
            guard code == CURLE_OK else { return .invalidRequest("request body rejected", curlCode: Int(code.rawValue)) }
        } else if request.method == .post {
            _ = ccurl_easy_setopt_off(easy, CURLOPT_POSTFIELDSIZE_LARGE, 0)
            _ = ccurl_easy_setopt_string(easy, CURLOPT_COPYPOSTFIELDS, "")
        }

        var list: UnsafeMutablePointer<curl_slist>?
        var hasUserAgent = false
        for field in request.headers {
            guard !field.name.contains(where: { $0 == "\r" || $0 == "\n" || $0 == ":" }),
                !field.value.contains(where: { $0 == "\r" || $0 == "\n" })
            else {
                curl_slist_free_all(list)
                return .invalidRequest("header '\(field.name.prefix(40))' holds a line break or colon")
            }
            if field.name.caseInsensitiveCompare("User-Agent") == .orderedSame { hasUserAgent = true }
            list = curl_slist_append(list, field.value.isEmpty ? "\(field.name);" : "\(field.name): \(field.value)")
        }
        if !hasUserAgent { list = curl_slist_append(list, "User-Agent: \(transfer.userAgent)") }
        // curl would otherwise wait up to a second for "100 Continue" before sending a large body.
        list = curl_slist_append(list, "Expect:")
        transfer.headerList = list
        _ = ccurl_easy_setopt_slist(easy, CURLOPT_HTTPHEADER, list)
        return nil
    }

    private func collectFinished() {
        var remaining: Int32 = 0
        while let message = curl_multi_info_read(multi, &remaining) {
            guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle,
                let transfer = active[easy]
            else { continue }
            let code = ccurl_message_result(message)
            if transfer.tooLarge {
                let limit = transfer.request.maxResponseBytes ?? 0
                end(transfer, .failure(CurlError.transport("the response body is larger than \(limit) bytes", curlCode: 0)))
            } else if code == CURLE_OK {
                var newConnections = 0
                _ = ccurl_easy_getinfo_long(easy, CURLINFO_NUM_CONNECTS, &newConnections)
                var status = 0
                _ = ccurl_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
                if status > 0 { transfer.status = status }
                end(transfer, .success(newConnections == 0))
            } else {
                end(transfer, .failure(error(for: code, transfer: transfer)))
            }
        }
    }

    /// Removes a transfer from the multi handle and tells its caller how it went.
    private func end(_ transfer: Transfer, _ result: Result<Bool, any Error>) {
        if let easy = transfer.easy {
            active[easy] = nil
            curl_multi_remove_handle(multi, easy)
            release(easy, of: transfer)
        }
        transfer.finish(result)
    }

    private func release(_ easy: UnsafeMutableRawPointer, of transfer: Transfer) {
        transfer.easy = nil
        curl_slist_free_all(transfer.headerList)
        transfer.headerList = nil
        curl_slist_free_all(transfer.connectList)
        transfer.connectList = nil
        if idleHandles.count < 32 {
            curl_easy_reset(easy)
            idleHandles.append(easy)
        } else {
            curl_easy_cleanup(easy)
        }
    }

    private func error(for code: CURLcode, transfer: Transfer) -> CurlError {
        let detail = String(cString: transfer.errorBuffer)
        let text = detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail
        let host = URL(string: transfer.request.url)?.host ?? transfer.request.url
        let message = "\(transfer.request.method.rawValue) \(host): \(text)"
        switch code {
        case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY:
            return .couldNotConnect(message, curlCode: Int(code.rawValue))
        case CURLE_OPERATION_TIMEDOUT:
            return .timedOut(message, curlCode: Int(code.rawValue))
        case CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL:
            return .invalidRequest(message, curlCode: Int(code.rawValue))
        default:
            return .transport(message, curlCode: Int(code.rawValue))
        }
    }
}

private func milliseconds(_ duration: Duration) -> Int {
    let (seconds, attoseconds) = duration.components
    return max(1, Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000))
}

private let curlWriteCallback: ccurl_data_callback = { buffer, size, count, userdata in
    guard let userdata, let buffer else { return 0 }
    let transfer = Unmanaged<Transfer>.fromOpaque(userdata).takeUnretainedValue()
    let length = size * count
    if transfer.receiveBody(UnsafeRawBufferPointer(start: buffer, count: length)) {
        // Past the caller's limit: 0 aborts the transfer.
        return transfer.tooLarge ? 0 : length
    }
    transfer.paused = true
    return ccurl_write_pause()
}

private let curlHeaderCallback: ccurl_data_callback = { buffer, size, count, userdata in
    guard let userdata, let buffer else { return 0 }
    let transfer = Unmanaged<Transfer>.fromOpaque(userdata).takeUnretainedValue()
    let length = size * count
    let line = String(decoding: UnsafeRawBufferPointer(start: buffer, count: length), as: UTF8.self)
    transfer.receiveHeaderLine(line)
    return length
}
