import CCurl
import Foundation
import Synchronization

/// libcurl is initialised once per process, before any handle exists.
private let curlGlobalInit: CURLcode = ccurl_global_init()

/// The thread that owns a curl multi handle and drives every transfer on it.
///
/// The loop waits with epoll on the sockets curl names through its socket callback and on an
/// eventfd, and tells curl only about the socket that is ready (`curl_multi_socket_action`),
/// so a wake costs the same with one transfer under way or sixty-four. Other threads talk to
/// it only through `submit`, which queues a command and signals the eventfd when the queue was
/// empty. Everything else here runs on that thread alone.
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
    private let epoll: Int32
    private let wake: Int32
    // Loop-thread state.
    private var active: [UnsafeMutableRawPointer: Transfer] = [:]
    private var idleHandles: [UnsafeMutableRawPointer] = []
    private var running = true
    /// The descriptors epoll watches: for what (`CURL_POLL_*`), and whether curl still waits on
    /// them. A connection's socket that curl stops waiting on (idle between two requests) stays
    /// watched, so that its next request costs no epoll call; should it turn ready while idle
    /// (the server closed it), the watch ends then. Other descriptors (a resolver's) are
    /// unwatched when curl says so.
    private var watched: [Int32: (what: Int32, wanted: Bool)] = [:]
    /// Connections' sockets, from the moment curl opens one to the moment it closes it (both
    /// through callbacks): only these are kept watched while idle, since only for these does
    /// the loop learn that a number now names another socket, which epoll does not watch.
    private var connectionSockets: Set<Int32> = []
    /// How many times the loop has woken from epoll, for tests: an idle loop wakes once a second.
    let wakeups = Atomic<Int>(0)
    /// When curl wants `CURL_SOCKET_TIMEOUT` handled (its timer callback); nil for never.
    private var timerDeadline: ContinuousClock.Instant?

    init(maxConnections: Int) {
        precondition(curlGlobalInit == CURLE_OK, "curl_global_init failed")
        guard let multi = curl_multi_init() else { fatalError("curl_multi_init failed") }
        self.multi = multi
        epoll = ccurl_epoll_create()
        precondition(epoll >= 0, "epoll_create1 failed")
        wake = ccurl_wake_create(epoll)
        precondition(wake >= 0, "eventfd failed")
        _ = ccurl_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, maxConnections)
        let opaque = Unmanaged.passUnretained(self).toOpaque()
        _ = ccurl_multi_setopt_socket_callback(multi, curlSocketCallback)
        _ = ccurl_multi_setopt_pointer(multi, CURLMOPT_SOCKETDATA, opaque)
        _ = ccurl_multi_setopt_timer_callback(multi, curlTimerCallback)
        _ = ccurl_multi_setopt_pointer(multi, CURLMOPT_TIMERDATA, opaque)
        let thread = Thread { [self] in self.run() }
        thread.name = "curl-multi"
        thread.start()
    }

    deinit {
        // Here, not when the loop ends: a `submit` racing the shutdown may still signal `wake`.
        ccurl_close(wake)
        ccurl_close(epoll)
    }

    /// Queues a command for the loop thread. After shutdown, new transfers fail at once.
    func submit(_ command: Command) {
        let (accepted, signal) = inbox.withLock { inbox -> (Bool, Bool) in
            guard !inbox.closed else { return (false, false) }
            // A queue that was not empty has had its signal already; the loop takes it whole.
            let signal = inbox.commands.isEmpty
            inbox.commands.append(command)
            if case .shutdown = command { inbox.closed = true }
            return (true, signal)
        }
        if signal {
            ccurl_wake_signal(wake)
        } else if !accepted, case .start(let transfer) = command {
            transfer.finish(.failure(CurlError.shutDown))
        }
    }

    // MARK: Loop thread

    private func run() {
        let capacity = 64
        var fds = [Int32](repeating: 0, count: capacity)
        var readiness = [Int32](repeating: 0, count: capacity)
        var stillRunning: Int32 = 0
        while running {
            let commands = inbox.withLock { inbox in
                defer { inbox.commands.removeAll(keepingCapacity: true) }
                return inbox.commands
            }
            for command in commands { handle(command) }
            guard running else { break }
            if let deadline = timerDeadline, deadline <= .now {
                timerDeadline = nil
                curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &stillRunning)
            }
            collectFinished()

            let ready = ccurl_epoll_wait(epoll, &fds, &readiness, Int32(capacity), waitMilliseconds())
            wakeups.add(1, ordering: .relaxed)
            for index in 0..<Int(ready) {
                let fd = fds[index]
                if fd == wake {
                    ccurl_wake_drain(wake)
                } else if watched[fd]?.wanted == false {
                    watched[fd] = nil
                    _ = ccurl_epoll_watch(epoll, fd, CURL_POLL_REMOVE, 0)
                } else {
                    curl_multi_socket_action(multi, fd, readiness[index], &stillRunning)
                }
            }
            collectFinished()
        }
        for (_, transfer) in active { end(transfer, .failure(CurlError.shutDown)) }
        for easy in idleHandles { curl_easy_cleanup(easy) }
        idleHandles.removeAll()
        curl_multi_cleanup(multi)
    }

    /// How long the loop may wait for a socket: until curl's timer, at most a second.
    private func waitMilliseconds() -> Int32 {
        guard let deadline = timerDeadline else { return 1000 }
        let (seconds, attoseconds) = (deadline - .now).components
        guard seconds >= 0, attoseconds >= 0 else { return 0 }
        // Rounded up: waking before curl's deadline would only wait again.
        return Int32(min(1000, seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000))
    }

    /// curl's timer callback: call back after `milliseconds` (0: at once), or never (-1).
    fileprivate func setTimer(_ milliseconds: Int) {
        timerDeadline = milliseconds < 0 ? nil : .now + .milliseconds(milliseconds)
    }

    /// curl's socket callback: wait on `fd` for `what`, or no longer.
    fileprivate func watch(_ fd: Int32, _ what: Int32) {
        let current = watched[fd]
        if what == CURL_POLL_REMOVE {
            guard let current else { return }
            if connectionSockets.contains(fd) {
                watched[fd] = (current.what, false)
            } else {
                watched[fd] = nil
                _ = ccurl_epoll_watch(epoll, fd, CURL_POLL_REMOVE, 0)
            }
        } else {
            if current?.what != what || !connectionSockets.contains(fd) {
                _ = ccurl_epoll_watch(epoll, fd, what, current == nil ? 1 : 0)
            }
            watched[fd] = (what, true)
        }
    }

    /// curl opened a connection's socket (its sockopt callback).
    fileprivate func opened(_ fd: Int32) {
        // Not inherited by a process this one starts: epoll would go on watching a socket
        // closed here but open there.
        ccurl_set_cloexec(fd)
        // The number's previous socket is closed, and epoll's watch of it with it.
        watched[fd] = nil
        connectionSockets.insert(fd)
    }

    /// curl's close-socket callback: closing a descriptor ends its watch in the kernel too.
    fileprivate func close(_ fd: Int32) {
        watched[fd] = nil
        connectionSockets.remove(fd)
        ccurl_close(fd)
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
        let loop = Unmanaged.passUnretained(self).toOpaque()
        _ = ccurl_easy_setopt_sockopt(easy, curlSocketOpenedCallback)
        _ = ccurl_easy_setopt_pointer(easy, CURLOPT_SOCKOPTDATA, loop)
        _ = ccurl_easy_setopt_close_socket(easy, curlCloseSocketCallback)
        _ = ccurl_easy_setopt_pointer(easy, CURLOPT_CLOSESOCKETDATA, loop)
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

private let curlSocketCallback: curl_socket_callback = { _, fd, what, userdata, _ in
    guard let userdata else { return -1 }
    Unmanaged<CurlMultiLoop>.fromOpaque(userdata).takeUnretainedValue().watch(fd, what)
    return 0
}

private let curlTimerCallback: curl_multi_timer_callback = { _, milliseconds, userdata in
    guard let userdata else { return -1 }
    Unmanaged<CurlMultiLoop>.fromOpaque(userdata).takeUnretainedValue().setTimer(milliseconds)
    return 0
}

private let curlSocketOpenedCallback: curl_sockopt_callback = { userdata, fd, _ in
    guard let userdata else { return CURL_SOCKOPT_ERROR }
    Unmanaged<CurlMultiLoop>.fromOpaque(userdata).takeUnretainedValue().opened(fd)
    return CURL_SOCKOPT_OK
}

private let curlCloseSocketCallback: curl_closesocket_callback = { userdata, fd in
    guard let userdata else { return 1 }
    Unmanaged<CurlMultiLoop>.fromOpaque(userdata).takeUnretainedValue().close(fd)
    return 0
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
    transfer.receiveHeaderLine(UnsafeRawBufferPointer(start: buffer, count: length))
    return length
}
