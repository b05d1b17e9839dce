// The floor under every HTTP figure of BENCHMARKS.md: a bare Hummingbird 2 route answering a
// fixed 2-byte body, on the same machine and cores. `http-floor-bench --listen 127.0.0.1:PORT`
// (bench/run starts it and loads it with wrk like the host).
import Foundation
import Hummingbird
import Logging

var arguments = CommandLine.arguments.dropFirst()
var host = "127.0.0.1"
var port = 8089
if let index = arguments.firstIndex(of: "--listen"), arguments.index(after: index) < arguments.endIndex {
    let parts = arguments[arguments.index(after: index)].split(separator: ":")
    host = String(parts[0])
    port = Int(parts[1]) ?? port
}
var logger = Logger(label: "http-floor")
logger.logLevel = .warning
// `--body FILE`: GET /body answers FILE's bytes as JSON, the floor under an answer that size.
var body = ByteBuffer()
if let index = arguments.firstIndex(of: "--body"), arguments.index(after: index) < arguments.endIndex,
    let data = FileManager.default.contents(atPath: arguments[arguments.index(after: index)])
{
    body = ByteBuffer(bytes: data)
}
let fixed = body
let router = Router()
router.get("/") { _, _ in "ok" }
router.get("/body") { _, _ in
    Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: fixed))
}
let application = Application(router: router, configuration: .init(address: .hostname(host, port: port)), logger: logger)
try await application.runService()
