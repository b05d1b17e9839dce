import Greptile
import Logging
import SessionClient
import SessionModel

/// What a failed tool call becomes: the one mapping from any failure to what the client
/// reads (an `isError` result with a sentence a person or a model can act on, or a protocol
/// error), the outcome label of `worker_tool_calls_total`, and what the log says.
///
/// A pure value: `GreptileTools.call` classifies what it caught and acts on the answer.
enum ToolFailure: Sendable {
    /// The arguments were wrong; the message names the field and what it must be.
    case invalidArguments(String)
    /// Greptile or GitHub refused or failed; the message says which and what to do.
    case upstream(String)
    /// The host refused the conversation's write (a limit): retrying will not help.
    case storageRefused(String)
    /// The conversation's owner took it away while the turn ran (unshared, deleted): the
    /// answer was not stored, and this conversation cannot take it.
    case conversationLost(String)
    /// No host could store the conversation's write.
    case storageUnavailable(String)
    /// The client cancelled the call (or the worker is stopping): no result is sent.
    case cancelled
    /// Not a tool failure but a protocol error (an unknown tool): a JSON-RPC error.
    case protocolError(RPCError)
    /// Anything else: a defect. The caller gets a sentence without internals; the log the detail.
    case unexpected(detail: String)

    init(_ error: any Error) {
        switch error {
        case let error as ToolError: self = .invalidArguments(error.message)
        case let error as GreptileError: self = .upstream(error.message)
        case let error as SessionError where error.isCancelled: self = .cancelled
        case let error as SessionError where error.isRejected && error.apiError?.code == .notShared:
            self = .conversationLost("the conversation stopped being shared with you to continue while Greptile answered")
        case let error as SessionError where error.isRejected && error.apiError?.code == .sessionNotFound:
            self = .conversationLost("the conversation was deleted or expired while Greptile answered")
        case let error as SessionError where error.isRejected: self = .storageRefused(error.message)
        case let error as SessionError: self = .storageUnavailable(error.message)
        case let error as RPCError: self = .protocolError(error)
        case is CancellationError, is TaskStop: self = .cancelled
        default: self = .unexpected(detail: String(describing: error))
        }
    }

    /// The `outcome` label of `worker_tool_calls_total`.
    var outcome: String {
        switch self {
        case .invalidArguments: "invalid_arguments"
        case .upstream: "upstream_error"
        case .storageRefused, .storageUnavailable, .conversationLost: "session_error"
        case .cancelled: "cancelled"
        case .protocolError: "unknown_tool"
        case .unexpected: "internal_error"
        }
    }

    /// Whether the call counts as a use of Greptile: not one refused before it was made (its
    /// arguments, the caller's access), nor one the client cancelled.
    var countsAsUsage: Bool {
        switch self {
        case .invalidArguments, .cancelled, .protocolError: false
        case .upstream, .storageRefused, .conversationLost, .storageUnavailable, .unexpected: true
        }
    }

    /// The text of the `isError` result of `tool`; nil when no result is sent (a cancelled
    /// call, a protocol error).
    func message(tool: String) -> String? {
        switch self {
        case .invalidArguments(let message), .upstream(let message):
            message
        case .storageRefused(let reason):
            "The answer could not be kept in this conversation (\(reason)), so neither the question nor the answer was stored. "
                + "Start a new conversation (another session_id) or send a shorter history with previous_messages."
        case .conversationLost(let reason):
            "The answer was not stored: \(reason), so neither the question nor the answer was kept in it. "
                + "Start a conversation of your own (another session_id) to go on asking."
        case .storageUnavailable(let reason):
            "The conversation could not be stored right now (\(reason)), so neither the question nor the answer was kept. Try again in a moment."
        case .unexpected:
            "\(tool) failed because of an unexpected error inside greptile-mcp; the details are in the server's log. "
                + "Try again; if it keeps failing, tell whoever runs this server."
        case .cancelled, .protocolError:
            nil
        }
    }

    /// Whether the worker's operator should hear of it, and how loudly.
    var logLevel: Logger.Level? {
        switch self {
        case .upstream, .storageUnavailable: .warning
        case .unexpected: .error
        case .invalidArguments, .storageRefused, .conversationLost, .cancelled, .protocolError: nil
        }
    }
}
