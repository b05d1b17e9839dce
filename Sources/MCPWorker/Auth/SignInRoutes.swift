import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SessionModel
import SignIn

/// Sign-in's routes on the worker (`SignInService.paths`): a Hummingbird request read into a
/// `SignInRequest`, a `SignInAnswer` written back. Bodies are small forms or JSON: 64 KiB at most.
enum SignInRoutes {
    static let maxBody = 64 * 1024

    static func respond(to request: Request, with signIn: SignInService) async -> Response {
        var query: [String: String] = [:]
        for (name, value) in request.uri.queryParameters where query[String(name)] == nil { query[String(name)] = String(value) }
        var form: [String: String] = [:]
        var json: JSONValue?
        if request.method == .post {
            guard let body = try? await request.body.collect(upTo: maxBody) else {
                return answer(.json(status: 413, ["error": "invalid_request", "error_description": "the body is larger than 64 KiB"], headers: []))
            }
            let bytes = Data(body.readableBytesView)
            let type = MCPResponder.mediaType(request.headers[.contentType] ?? "")
            if type == "application/json" {
                guard let parsed = try? JSONValue.parseStrictly(bytes) else {
                    return answer(.json(status: 400, ["error": "invalid_client_metadata", "error_description": "the body is not JSON"], headers: []))
                }
                json = parsed
            } else {
                form = FormBody.parse(String(decoding: bytes, as: UTF8.self))
            }
        }
        let signInRequest = SignInRequest(
            method: request.method.rawValue, path: request.uri.path, query: query, form: form, json: json,
            authorization: request.headers[.authorization], cookie: request.headers[.cookie])
        return answer(await signIn.respond(signInRequest))
    }

    static func answer(_ answer: SignInAnswer) -> Response {
        switch answer {
        case .json(let status, let value, let headers):
            var response = MCPResponder.json(bytes: Data(value.jsonText().utf8), status: HTTPResponse.Status(code: status))
            set(headers, on: &response)
            return response
        case .redirect(let location, let headers):
            var response = Response(status: .found)
            response.headers[.location] = location
            set(headers, on: &response)
            return response
        case .page(let page):
            var response = Response(status: HTTPResponse.Status(code: page.status), body: .init(byteBuffer: ByteBuffer(string: page.html)))
            set(page.headers, on: &response)
            return response
        }
    }

    private static func set(_ headers: [(String, String)], on response: inout Response) {
        for (name, value) in headers {
            guard let field = HTTPField.Name(name) else { continue }
            if name == "Set-Cookie" { response.headers.append(HTTPField(name: field, value: value)) } else { response.headers[field] = value }
        }
    }
}
