import Foundation
import Greptile
import SessionModel

/// The files an answer or a search drew on, as MCP `resource_link` content items a client can
/// show and open: each Greptile source (`repository`, `remote`, `branch`, `filepath`,
/// `linestart`, `lineend`, `summary`) on GitHub or GitLab becomes a link to the file at that
/// branch and those lines. Sources of other hosts, or without what a link needs, are left out
/// (they are still in the structured result).
enum SourceLinks {
    /// At most this many links per result.
    static let limit = 50

    static func links(from sources: [JSONValue]) -> [JSONValue] {
        var links: [JSONValue] = []
        var seen: Set<String> = []
        for source in sources {
            guard links.count < limit, let fields = source.objectValue, let uri = url(of: fields), seen.insert(uri).inserted else { continue }
            var link: JSONObject = ["type": "resource_link", "uri": .string(uri), "name": .string(fields["filepath"]?.stringValue ?? uri)]
            if let summary = fields["summary"]?.stringValue, !summary.isEmpty { link["description"] = .string(String(summary.prefix(500))) }
            links.append(.object(link))
        }
        return links
    }

    /// The file's address on its host, with its lines when the source names them.
    static func url(of source: JSONObject) -> String? {
        guard let repository = source["repository"]?.stringValue, let branch = source["branch"]?.stringValue,
            let path = source["filepath"]?.stringValue, !path.isEmpty, !branch.isEmpty,
            (try? RepositoryName.validate(repository, remote: source["remote"]?.stringValue ?? "github")) != nil
        else { return nil }
        let file = (branch + "/" + path).split(separator: "/", omittingEmptySubsequences: true).map { encode(String($0)) }.joined(separator: "/")
        let start = source["linestart"]?.numberValue.map { Int($0) }
        let end = source["lineend"]?.numberValue.map { Int($0) }
        switch source["remote"]?.stringValue?.lowercased() ?? "github" {
        case "github":
            let lines = start.map { start in end.map { end in "#L\(start)-L\(end)" } ?? "#L\(start)" } ?? ""
            return "https://github.com/\(repository)/blob/\(file)\(lines)"
        case "gitlab":
            let lines = start.map { start in end.map { end in "#L\(start)-\(end)" } ?? "#L\(start)" } ?? ""
            return "https://gitlab.com/\(repository)/-/blob/\(file)\(lines)"
        default:
            return nil
        }
    }

    /// One path segment, percent-encoded.
    private static func encode(_ segment: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return segment.addingPercentEncoding(withAllowedCharacters: allowed) ?? segment
    }
}
