import Foundation

/// Compares secrets in time that does not depend on where, or whether, they differ.
public func constantTimeEqual(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
    var difference = UInt8(truncatingIfNeeded: lhs.count ^ rhs.count)
    for index in 0..<max(lhs.count, rhs.count) {
        let left = index < lhs.count ? lhs[index] : 0
        let right = index < rhs.count ? rhs[index] : 0
        difference |= left ^ right
    }
    return difference == 0
}

/// The credentials of an `Authorization: Bearer <token>` header, or nil for another scheme.
///
/// The scheme is matched without regard to case and may be followed by several spaces
/// (RFC 9110, section 11.1): `bearer abc` and `BEARER  abc` carry the token `abc`.
public func bearerToken(in header: String?) -> Substring? {
    credentials(of: "bearer", in: header)
}

/// The password of an `Authorization: Basic <base64 of user:password>` header: how a browser
/// sends a key a person typed at its prompt (the user name is not looked at).
public func basicPassword(in header: String?) -> String? {
    guard let encoded = credentials(of: "basic", in: header), let data = Data(base64Encoded: String(encoded)),
        let text = String(data: data, encoding: .utf8), let colon = text.firstIndex(of: ":")
    else { return nil }
    let password = String(text[text.index(after: colon)...])
    return password.isEmpty ? nil : password
}

/// What follows `scheme` (any case) and its spaces in an `Authorization` header.
private func credentials(of scheme: String, in header: String?) -> Substring? {
    guard let header else { return nil }
    let utf8 = header.utf8
    guard utf8.count > scheme.utf8.count,
        utf8.prefix(scheme.utf8.count).elementsEqual(scheme.utf8, by: { $0 | 0x20 == $1 }),
        utf8.dropFirst(scheme.utf8.count).first == UInt8(ascii: " ")
    else { return nil }
    let token = header.dropFirst(scheme.count).drop { $0 == " " }
    return token.isEmpty ? nil : token
}
