import CompressNIO
import NIOCore

/// How message content is stored: its UTF-8 bytes, or, past `threshold` bytes, those bytes
/// compressed with zlib when that saves space. Greptile's answers (long Markdown with code)
/// shrink to a third or so; short turns are left alone, since compressing them costs more than
/// it saves. A stored row says which it is, so rows written before compression (or below the
/// threshold) read as they always did.
public struct ContentCodec: Sendable, Hashable {
    /// Content of more bytes than this is compressed; 0: never.
    public var threshold: Int

    public init(threshold: Int = 2048) {
        self.threshold = threshold
    }

    public static let off = ContentCodec(threshold: 0)

    /// The bytes to store, and whether they are compressed.
    public func encode(_ content: String) -> (bytes: [UInt8], compressed: Bool) {
        let plain = Array(content.utf8)
        guard threshold > 0, plain.count > threshold else { return (plain, false) }
        var input = ByteBuffer(bytes: plain)
        guard let output = try? input.compress(with: .zlib()), output.readableBytes < plain.count else { return (plain, false) }
        return (Array(output.readableBytesView), true)
    }

    /// The content of stored bytes; a row that cannot be inflated is an error, never a guess.
    public static func decode(_ bytes: some Collection<UInt8>, compressed: Bool) throws -> String {
        guard compressed else { return String(decoding: bytes, as: UTF8.self) }
        var input = ByteBuffer(bytes: bytes)
        do {
            let output = try input.decompress(with: .zlib())
            return String(decoding: output.readableBytesView, as: UTF8.self)
        } catch {
            throw StoreError("a stored message could not be inflated: \(error)")
        }
    }
}
