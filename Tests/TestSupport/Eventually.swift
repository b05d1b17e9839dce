import Foundation

/// Polls `condition` until it holds, or fails after `timeout` with `message`: how a test waits
/// for something to happen, instead of sleeping a fixed time and hoping it did.
public func eventually(
    _ message: @autoclosure () -> String, timeout: Duration = .seconds(20), every interval: Duration = .milliseconds(50),
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while true {
        if try await condition() { return }
        guard ContinuousClock.now < deadline else {
            throw ServiceProcess.Failure(description: "not within \(timeout): \(message())")
        }
        try await Task.sleep(for: interval)
    }
}

/// Polls `produce` until it gives a value, or fails after `timeout` with `message`.
public func eventually<Value>(
    _ message: @autoclosure () -> String, timeout: Duration = .seconds(20), every interval: Duration = .milliseconds(50),
    _ produce: () async throws -> Value?
) async throws -> Value {
    let deadline = ContinuousClock.now + timeout
    while true {
        if let value = try await produce() { return value }
        guard ContinuousClock.now < deadline else {
            throw ServiceProcess.Failure(description: "not within \(timeout): \(message())")
        }
        try await Task.sleep(for: interval)
    }
}

extension Duration {
    /// The duration in seconds, fractional.
    public var inSeconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

extension Array {
    /// The element at `index`, or an error saying how many there were: a test that finds
    /// fewer than it expects fails, instead of crashing the whole run.
    public func at(_ index: Int, file: StaticString = #filePath, line: UInt = #line) throws -> Element {
        guard indices.contains(index) else {
            throw ServiceProcess.Failure(description: "expected an element at index \(index) of \(count) (\(file):\(line))")
        }
        return self[index]
    }
}
