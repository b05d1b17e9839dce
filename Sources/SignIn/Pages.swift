import Foundation

/// The pages a person sees during sign-in: the consent form and the error page. Plain HTML that
/// works without JavaScript, loads nothing from anywhere, and may not be framed.
public enum SignInPages {
    /// A page and the headers it must go out with.
    public struct Page: Sendable, Equatable {
        public var status: Int
        public var html: String
        public var headers: [(String, String)]

        public static func == (a: Page, b: Page) -> Bool {
            a.status == b.status && a.html == b.html && a.headers.map { "\($0)=\($1)" } == b.headers.map { "\($0)=\($1)" }
        }
    }

    /// Asks `principal` whether `client` may use this server as them. `login` and `csrf` go back
    /// with the answer; the form may be posted here and redirect to `redirectURI`'s origin only.
    public static func consent(client: RegisteredClient, principal: String, redirectURI: String, login: String, csrf: String) -> Page {
        let host =
            URLComponents(string: redirectURI).map { parts in parts.host.map { "\(parts.scheme ?? "")://\($0)" } ?? "\(parts.scheme ?? ""):" } ?? redirectURI
        let body = """
            <h1>Allow \(escape(client.name)) to use Greptile code search?</h1>
            <p>You are signed in as <strong>\(escape(principal))</strong>.</p>
            <p>\(escape(client.name)) will be able to ask questions about the repositories this server knows, \
            and to read and add to your conversations, as you, until you revoke it.</p>
            <p class="small">It will be sent back to <code>\(escape(host))</code>.</p>
            <form method="post" action="/oauth/consent">
            <input type="hidden" name="login" value="\(escape(login))">
            <input type="hidden" name="csrf" value="\(escape(csrf))">
            <button type="submit" name="decision" value="allow">Allow</button>
            <button type="submit" name="decision" value="deny" class="secondary">Deny</button>
            </form>
            """
        return Page(status: 200, html: document("Allow \(client.name)?", body), headers: headers(formAction: formTarget(redirectURI)))
    }

    /// Says what went wrong, and what to do.
    public static func error(_ message: String, status: Int = 400) -> Page {
        Page(
            status: status, html: document("Sign-in failed", "<h1>Sign-in failed</h1><p>\(escape(message))</p>"),
            headers: headers(formAction: nil))
    }

    /// The `form-action` source of a redirect URI: its origin, or its private-use scheme.
    static func formTarget(_ uri: String) -> String? {
        guard let parts = URLComponents(string: uri), let scheme = parts.scheme?.lowercased() else { return nil }
        guard let host = parts.host, scheme == "http" || scheme == "https" else { return scheme + ":" }
        return "\(scheme)://\(host)\(parts.port.map { ":\($0)" } ?? "")"
    }

    static func headers(formAction target: String?) -> [(String, String)] {
        let formAction = ["'self'", target].compactMap { $0 }.joined(separator: " ")
        return [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action \(formAction); frame-ancestors 'none'; base-uri 'none'"),
            ("X-Frame-Options", "DENY"), ("Cache-Control", "no-store"), ("Referrer-Policy", "no-referrer"),
        ]
    }

    private static func document(_ title: String, _ body: String) -> String {
        """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(escape(title))</title>
        <style>
        body { font: 16px/1.5 system-ui, sans-serif; max-width: 34em; margin: 4em auto; padding: 0 1em; color: #1b1f24; }
        h1 { font-size: 1.4em; } .small { color: #57606a; font-size: 0.9em; }
        button { font: inherit; padding: 0.5em 1.4em; margin-right: 0.6em; border-radius: 6px; border: 1px solid #1f6feb; background: #1f6feb; color: #fff; cursor: pointer; }
        button.secondary { background: #fff; color: #1f6feb; }
        </style></head>
        <body>\(body)</body></html>
        """
    }

    /// Text as HTML: nothing a client or provider named can become markup.
    public static func escape(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }
}
