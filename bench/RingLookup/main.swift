// Cost of a ring lookup: `swift run -c release ring-lookup-bench [ids] [rounds]`.
// Prints nanoseconds per lookup for rings of 3, 10 and 50 members, hashing the id each time
// (what a host and a worker do per request). Results go in BENCHMARKS.md.
import Foundation
import HashRing

let arguments = CommandLine.arguments.dropFirst().compactMap { Int($0) }
let idCount = arguments.first ?? 100_000
let rounds = arguments.dropFirst().first ?? 20

var generator = SystemRandomNumberGenerator()
let ids = (0..<idCount).map { _ in "conv:principal:" + String(generator.next() as UInt64, radix: 16) + String(generator.next() as UInt64, radix: 16) }

print("ring lookups, \(idCount) ids of \(ids[0].utf8.count) bytes, best of \(rounds) rounds")
for size in [3, 10, 50] {
    let ring = HashRing(nodes: (1...size).map { "host-\($0)" })
    var best = Duration.seconds(1_000)
    var checksum = 0
    for _ in 0..<rounds {
        let start = ContinuousClock.now
        for id in ids {
            checksum &+= ring.ownerIndex(of: HashRing.hash(id)) ?? 0
        }
        best = min(best, ContinuousClock.now - start)
    }
    let nanoseconds = Double(best.components.seconds) * 1e9 + Double(best.components.attoseconds) / 1e9
    print(String(format: "%3d members: %7.1f ns per lookup  (checksum %d)", size, nanoseconds / Double(idCount), checksum))
}
