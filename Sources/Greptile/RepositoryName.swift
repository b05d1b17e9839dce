/// Repository names and branches as the hosting services define them, checked before any of
/// them goes into an upstream URL or body.
///
/// A caller's `repository` ends up in GitHub's `/repos/{owner}/{name}` and in Greptile's
/// repository id: unchecked, `../user` would fetch GitHub's `/user` with the server's token
/// and `a/b?x=1` would add a query. Every name is checked here, and every path segment is
/// percent-encoded where the URL is built as well.
public enum RepositoryName {
    /// Why a name or branch is refused: a sentence for the tool's caller.
    public struct Invalid: Error, Sendable, Hashable, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    /// Checks `owner/name` for `remote` ("github" or "gitlab").
    ///
    /// GitHub: the owner is 1 to 39 letters, digits or hyphens, not starting with a hyphen;
    /// the name is 1 to 100 letters, digits, `.`, `_` or `-`, and not `.` or `..`.
    /// GitLab: a namespace of one or more groups, then the project, each like a GitHub name.
    public static func validate(_ repository: String, remote: String) throws(Invalid) {
        let shown = String(repository.prefix(100))
        let parts = repository.split(separator: "/", omittingEmptySubsequences: false)
        let expected = remote == "gitlab" ? "group/project" : "owner/name"
        guard remote == "gitlab" ? parts.count >= 2 && parts.count <= 20 : parts.count == 2 else {
            throw Invalid(message: "repository must be '\(expected)' (got '\(shown)')")
        }
        if remote == "github" {
            let owner = parts[0]
            guard (1...39).contains(owner.utf8.count), owner.utf8.allSatisfy(isOwnerByte), owner.first != "-" else {
                throw Invalid(message: "repository owner must be 1 to 39 letters, digits or hyphens, not starting with a hyphen (got '\(shown)')")
            }
        }
        for part in remote == "github" ? parts.dropFirst() : parts[...] {
            guard (1...100).contains(part.utf8.count), part.utf8.allSatisfy(isNameByte), part != ".", part != ".." else {
                throw Invalid(message: "repository must be '\(expected)' with names of letters, digits, '.', '_' or '-' (got '\(shown)')")
            }
        }
    }

    /// Checks a branch name as git allows it, and short enough to travel in a URL.
    public static func validateBranch(_ branch: String) throws(Invalid) {
        let shown = String(branch.prefix(100))
        let forbidden: Set<UInt8> = Set(" ~^:?*[\\".utf8)
        guard (1...255).contains(branch.utf8.count),
            branch.utf8.allSatisfy({ $0 > 0x20 && $0 != 0x7F && !forbidden.contains($0) }),
            !branch.hasPrefix("-"), !branch.hasPrefix("/"), !branch.hasSuffix("/"), !branch.hasSuffix("."),
            !branch.contains(".."), !branch.contains("//"), !branch.contains("@{"), !branch.hasSuffix(".lock")
        else {
            throw Invalid(message: "branch '\(shown)' is not a valid git branch name")
        }
    }

    private static func isOwnerByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"):
            true
        default:
            false
        }
    }

    private static func isNameByte(_ byte: UInt8) -> Bool {
        isOwnerByte(byte) || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_")
    }
}

extension String {
    /// This text as one URL path segment: everything but unreserved characters
    /// (`A-Z a-z 0-9 - . _ ~`) percent-encoded, `/` included.
    public var percentEncodedPathSegment: String {
        var output = ""
        for byte in utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                output.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = String(byte, radix: 16, uppercase: true)
                output += "%" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return output
    }
}
