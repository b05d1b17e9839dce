import Clocks
import Foundation
import HTTPServing
import Logging
import MCP
import NIOCore
import ServerRuntime
import ServiceLifecycle
import SessionModel
import Synchronization
import TestSupport
import Testing

@testable import MCPWorker

/// The parts of a streamed call, without a server and without waiting on the wall clock:
/// the bounded event buffer, the heartbeat's ticks (clock and sleep injected), and the
/// service that owns calls outliving their request.
@Suite("streamed calls, in process")
struct StreamedCallTests {
    /// A sleep that returns when the test fires a tick (a tick fired early is kept).
    actor Ticks {
        private var pending = 0
        private var waiter: CheckedContinuation<Void, Never>?

        func next() async {
            if pending > 0 {
                pending -= 1
                return
            }
            await withCheckedContinuation { waiter = $0 }
        }

        func fire() {
            if let waiter {
                self.waiter = nil
                waiter.resume()
            } else {
                pending += 1
            }
        }
    }

    static func text(_ buffer: ByteBuffer?) -> String? {
        buffer.map { String(buffer: $0) }
    }

    @Test("a producer waits while the buffer is full, and the buffer never holds more than its capacity")
    func boundedBuffer() async throws {
        let events = EventStream(journal: nil, capacity: 3, clock: .driven(by: TestClock()))
        for number in 0..<3 { await events.send(Data("\(number)".utf8)) }
        #expect(events.buffered == 3)
        let fourth = Task { await events.send(Data("3".utf8)) }
        try await eventually("the fourth event waits for room") { events.waitingProducers == 1 }
        #expect(events.buffered == 3)
        #expect(Self.text(await events.next()) == "data: 0\n\n")
        await fourth.value
        #expect(events.buffered == 3)
        for number in 1...3 { #expect(Self.text(await events.next()) == "data: \(number)\n\n") }
        await events.finish()
        #expect(await events.next() == nil)
    }

    @Test("once the reader has gone, events are dropped and a waiting producer is released")
    func readerGone() async throws {
        let events = EventStream(journal: nil, capacity: 1, clock: .driven(by: TestClock()))
        await events.send(Data("kept".utf8))
        let waiting = Task { await events.send(Data("waits".utf8)) }
        try await eventually("the second event waits") { events.waitingProducers == 1 }
        events.readerLeft()
        await waiting.value
        for _ in 0..<1_000 { await events.send(Data(repeating: 0x61, count: 1_000)) }
        #expect(events.buffered == 0)
        #expect(events.readerGone.isOpen)
        #expect(await events.next() == nil)
    }

    @Test(
        "a tick sends a keep-alive, or a heartbeat once a call that reports progress has been idle long enough",
        arguments: [
            (idle: 0, elapsed: 0, progress: true, tick: StreamTiming.Tick.keepAlive),
            (idle: 1, elapsed: 5, progress: true, tick: .keepAlive),
            (idle: 2, elapsed: 2, progress: true, tick: .heartbeat(waitedSeconds: 2)),
            (idle: 9, elapsed: 30, progress: true, tick: .heartbeat(waitedSeconds: 30)),
            (idle: 9, elapsed: 30, progress: false, tick: .keepAlive),
        ])
    func tickDecision(_ row: (idle: Int, elapsed: Int, progress: Bool, tick: StreamTiming.Tick)) {
        let timing = StreamTiming(keepAliveInterval: .seconds(1), heartbeatAfter: .seconds(2), clock: .driven(by: TestClock()))
        #expect(timing.tick(idleFor: .seconds(row.idle), elapsed: .seconds(row.elapsed), reportsProgress: row.progress) == row.tick)
    }

    @Test("the heartbeat, driven by an injected clock and sleep: keep-alives, then 'still waiting' progress")
    func heartbeatTicks() async throws {
        let clock = TestClock()
        let ticks = Ticks()
        let timing = StreamTiming(
            keepAliveInterval: .seconds(1), heartbeatAfter: .seconds(2), clock: .driven(by: clock), sleep: { _ in await ticks.next() })
        let events = EventStream(journal: nil, clock: .driven(by: clock))
        let reporter = StreamProgress(token: .string("t"), events: events)
        let heartbeat = Task { await timing.heartbeat(events, reporter) }

        await ticks.fire()
        #expect(Self.text(await events.next()) == ": keepalive\n\n")

        await clock.advance(by: .seconds(3))
        await ticks.fire()
        let progress = try #require(Self.text(await events.next()))
        #expect(progress.contains(#""method":"notifications/progress""#))
        #expect(progress.contains("waiting for Greptile (3 s)"))
        #expect(progress.contains(#""progressToken":"t""#))

        // The heartbeat itself counts as an event: the next tick is a keep-alive again.
        await clock.advance(by: .seconds(1))
        await ticks.fire()
        #expect(Self.text(await events.next()) == ": keepalive\n\n")

        heartbeat.cancel()
        await ticks.fire()
        await heartbeat.value
    }

    @Test("calls outliving their request run under the worker's service: shutdown waits for them, uncancelled, and takes no new one")
    func backgroundCallsDrain() async throws {
        let background = BackgroundCalls()
        let release = Latch()
        let outcome = Mutex<(finished: Bool, cancelled: Bool)>((false, false))
        let group = ServiceGroup(configuration: .init(services: [background], logger: Logger(label: "background-calls")))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let running = Latch()
            #expect(
                background.start {
                    running.open()
                    await release.wait()
                    for _ in 0..<100 { await Task.yield() }
                    outcome.withLock { $0 = (true, Task.isCancelled) }
                })
            await running.wait()
            await group.triggerGracefulShutdown()
            try await eventually("no new call once shutting down") { !background.start {} }
            #expect(outcome.withLock { $0.finished } == false)
            release.open()
            try await tasks.next()
        }
        #expect(outcome.withLock { $0.finished })
        #expect(outcome.withLock { $0.cancelled } == false)
    }
}
