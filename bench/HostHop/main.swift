// What one worker-to-host exchange costs the worker, by HTTP client: libcurl on its own thread
// (`CurlClient`, what the worker uses) against AsyncHTTPClient on the process's NIO event loops.
// `host-hop-bench --url URL --client curl|nio --concurrency C --seconds S` sends GETs to URL
// (a durable host's history read, say) from C tasks for S seconds and prints one JSON line:
// exchanges per second, CPU microseconds per exchange (this process's user + system time),
// and latency percentiles. bench/run starts a host and runs it for both clients.
import AsyncHTTPClient
import CurlHTTP
import Foundation
import NIOCore

let arguments = CommandLine.arguments.dropFirst()
func option(_ name: String, _ fallback: String) -> String {
    guard let index = arguments.firstIndex(of: name), arguments.index(after: index) < arguments.endIndex else { return fallback }
    return arguments[arguments.index(after: index)]
}
let url = option("--url", "http://127.0.0.1:7401/health")
let clientName = option("--client", "curl")
let concurrency = Int(option("--concurrency", "16")) ?? 16
let seconds = Double(option("--seconds", "5")) ?? 5

func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
}

enum Client {
    case curl(CurlClient)
    case nio(HTTPClient)

    func get(_ url: String) async throws -> Int {
        switch self {
        case .curl(let client):
            let response = try await client.execute(CurlHTTP.HTTPRequest(url: url, timeout: .seconds(2)))
            return response.body.count
        case .nio(let client):
            let response = try await client.execute(HTTPClientRequest(url: url), timeout: .seconds(2))
            return try await response.body.collect(upTo: 1 << 24).readableBytes
        }
    }
}

let client: Client = clientName == "nio" ? .nio(HTTPClient.shared) : .curl(CurlClient())
// Warm up: connections open, code paged in.
for _ in 0..<200 { _ = try await client.get(url) }

let started = ContinuousClock.now
let cpuBefore = cpuSeconds()
let deadline = started + .milliseconds(Int64(seconds * 1000))
let latencies = await withTaskGroup(of: [Double].self) { group in
    for _ in 0..<concurrency {
        group.addTask {
            var own: [Double] = []
            while ContinuousClock.now < deadline {
                let sent = ContinuousClock.now
                _ = try? await client.get(url)
                let took = ContinuousClock.now - sent
                own.append(Double(took.components.seconds) * 1e3 + Double(took.components.attoseconds) / 1e15)
            }
            return own
        }
    }
    var all: [Double] = []
    for await own in group { all += own }
    return all.sorted()
}
let wall = ContinuousClock.now - started
let wallSeconds = Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18
let cpu = cpuSeconds() - cpuBefore
func percentile(_ p: Double) -> Double { latencies.isEmpty ? 0 : latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }
let line: [String: Any] = [
    "client": clientName, "concurrency": concurrency, "exchanges": latencies.count,
    "per_second": Double(latencies.count) / wallSeconds, "cpu_us_per_exchange": cpu / Double(max(latencies.count, 1)) * 1e6,
    "p50_ms": percentile(0.5), "p99_ms": percentile(0.99),
]
print(String(decoding: try JSONSerialization.data(withJSONObject: line, options: [.sortedKeys]), as: UTF8.self))
