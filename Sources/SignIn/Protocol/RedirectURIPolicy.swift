import Foundation

/// Which redirect URIs a client may register, and when a requested one is the registered one
/// (OAuth 2.1; RFC 8252 for native apps).
///
/// - https anywhere; plain http only to a loopback address (a native app's local listener);
///   a private-use scheme (`cursor://anysphere.cursor-mcp/oauth/callback`) for apps that own it;
///   never a fragment, never credentials in the URI, never `javascript:`, `data:` or `file:`.
/// - A requested URI matches a registered one exactly, except that a loopback redirect matches
///   on any port (the app picks a free one each time, RFC 8252 §7.3).
public enum RedirectURIPolicy {
    /// Why `uri` cannot be registered; nil when it can.
    public static func refusal(_ uri: String) -> String? {
        guard uri.utf8.count <= 2_000, let parts = URLComponents(string: uri), let scheme = parts.scheme?.lowercased() else {
            return "redirect URI '\(uri.prefix(100))' is not an absolute URI"
        }
        guard parts.fragment == nil else { return "redirect URI '\(uri.prefix(100))' must not have a fragment" }
        guard parts.user == nil, parts.password == nil else { return "redirect URI '\(uri.prefix(100))' must not carry credentials" }
        switch scheme {
        case "https":
            guard let host = parts.host, !host.isEmpty else { return "redirect URI '\(uri.prefix(100))' has no host" }
            return nil
        case "http":
            guard let host = parts.host, isLoopback(host: host) else {
                return "redirect URI '\(uri.prefix(100))': plain http only to a loopback address (127.0.0.1, [::1], localhost); use https"
            }
            return nil
        case "javascript", "data", "file", "vbscript", "about", "blob", "ftp", "ws", "wss":
            return "redirect URI '\(uri.prefix(100))': the \(scheme) scheme is not a redirect"
        default:
            // A private-use scheme (RFC 8252 §7.1) names an app: reverse domain style, or at least
            // a scheme of its own with something after it.
            guard scheme.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "+" }), uri.count > scheme.count + 1 else {
                return "redirect URI '\(uri.prefix(100))' is not an absolute URI"
            }
            return nil
        }
    }

    /// Whether `requested` is one of `registered`: the same string, or the same loopback URI on
    /// another port.
    public static func matches(_ requested: String, registered: [String]) -> Bool {
        if registered.contains(requested) { return true }
        guard let asked = URLComponents(string: requested), asked.scheme == "http", let host = asked.host, isLoopback(host: host) else { return false }
        return registered.contains { candidate in
            guard let known = URLComponents(string: candidate), known.scheme == "http", known.host == asked.host else { return false }
            return known.path == asked.path && known.query == asked.query
        }
    }

    /// Whether `host` names this machine: 127.0.0.0/8, ::1, or localhost.
    public static func isLoopback(host: String) -> Bool {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        if bare == "localhost" || bare == "::1" { return true }
        let octets = bare.split(separator: ".")
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }
}

/// Proof Key for Code Exchange, S256 only (OAuth 2.1; `plain` is refused).
public enum PKCE {
    /// Whether a verifier is one: 43 to 128 of `A-Z a-z 0-9 - . _ ~` (RFC 7636 §4.1).
    public static func isVerifier(_ text: String) -> Bool {
        (43...128).contains(text.utf8.count) && text.utf8.allSatisfy(isUnreserved)
    }

    /// Whether a challenge is one: a base64url SHA-256, 43 characters.
    public static func isChallenge(_ text: String) -> Bool {
        text.utf8.count == 43 && text.utf8.allSatisfy(isUnreserved)
    }

    /// Whether `verifier` is the one `challenge` was made from.
    public static func verifies(_ verifier: String, challenge: String) -> Bool {
        guard isVerifier(verifier) else { return false }
        return Digests.challenge(of: verifier) == challenge
    }

    static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            true
        default: false
        }
    }
}
