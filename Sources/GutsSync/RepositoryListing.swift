import GutsGit
import GutsSupport
import GutsTransport
import GutsTrust
import GutsWire

/// The client side of ListRepositories and of a bare GetRefs (`guts ls`): asks, waits
/// within a timeout, and checks what comes back before anyone prints it.
public enum RepositoryListing {
    /// Most repositories one listing takes (pages of 256): a peer that keeps saying "more"
    /// cannot keep a client busy for ever.
    public static let maxRepositories = 100_000

    /// Checks a Repositories page that answers a request with `after`: valid names in
    /// strictly ascending byte order, all after `after`, valid repository IDs, valid head
    /// names; and a page that says `more` lists something (else the next request would
    /// be the same one again).
    public static func check(_ page: Repositories, after: String) throws(SyncFailure) {
        var previous = after
        for e in page.repositories {
            guard RepositoryName(e.name) != nil else {
                throw .protocolViolation("peer listed an invalid repository name '\(Escape.text(String(e.name.prefix(100))))'")
            }
            guard e.name.utf8.lexicographicallyPrecedes(previous.utf8) == false, e.name != previous else {
                throw .protocolViolation("peer listed '\(e.name)' out of order (after '\(previous)')")
            }
            if let id = e.id, RepositoryID(bytes: id) == nil {
                throw .protocolViolation("peer listed an invalid repository ID for '\(e.name)'")
            }
            guard e.head.isEmpty || (e.head.hasPrefix("refs/") && GutsGit.Refs.checkRefFormat(e.head)) else {
                throw .protocolViolation("peer listed an invalid HEAD '\(Escape.text(String(e.head.prefix(100))))' for '\(e.name)'")
            }
            previous = e.name
        }
        if page.more && page.repositories.isEmpty {
            throw .protocolViolation("peer said more repositories follow but listed none")
        }
    }

    /// Every repository the peer serves to this client, page after page, each page
    /// within `timeout` seconds.
    public static func list(over connection: any PeerLink, timeout: Double) throws(SyncFailure) -> [RepositoryEntry] {
        connection.beginRequests()
        defer { connection.endRequests() }
        var all: [RepositoryEntry] = []
        var after = ""
        while true {
            let id = RequestIDs.next()
            connection.send(.sync(.listRepositories(ListRepositories(requestID: id, after: after))))
            let page: Repositories = try wait(connection, timeout, "the list of repositories") { (message: Message) throws(SyncFailure) -> Repositories? in
                switch (message, message.syncMessage) {
                case let (_, .repositories(r)?) where r.requestID == id: return r
                case let (.error(e), _) where e.requestID == id: throw failure(e, "the list of repositories")
                default: return nil
                }
            }
            try check(page, after: after)
            all += page.repositories
            guard page.more, let last = page.repositories.last else { return all }
            guard all.count < maxRepositories else {
                throw .refused("peer lists more than \(maxRepositories) repositories; stopped there")
            }
            after = last.name
        }
    }

    /// The refs of `repository` (a name or an ID), as GetRefs answers them, checked.
    public static func refs(of repository: String, over connection: any PeerLink, timeout: Double) throws(SyncFailure) -> Refs {
        connection.beginRequests()
        defer { connection.endRequests() }
        let id = RequestIDs.next()
        connection.send(.sync(.getRefs(GetRefs(requestID: id, repository: repository))))
        let refs: Refs = try wait(connection, timeout, "the list of refs") { (message: Message) throws(SyncFailure) -> Refs? in
            switch (message, message.syncMessage) {
            case let (_, .refs(r)?) where r.requestID == id: return r
            case let (.error(e), _) where e.requestID == id: throw failure(e, "'\(repository)'")
            default: return nil
            }
        }
        var previous: String?
        for r in refs.refs {
            guard r.name.hasPrefix("refs/"), GutsGit.Refs.checkRefFormat(r.name) else {
                throw .protocolViolation("peer listed an invalid ref name '\(Escape.text(String(r.name.prefix(100))))'")
            }
            if let previous, !previous.utf8.lexicographicallyPrecedes(r.name.utf8) {
                throw .protocolViolation("peer listed '\(Escape.text(r.name))' out of order or twice")
            }
            previous = r.name
        }
        guard refs.head.isEmpty || (refs.head.hasPrefix("refs/") && GutsGit.Refs.checkRefFormat(refs.head)) else {
            throw .protocolViolation("peer named an invalid HEAD '\(Escape.text(String(refs.head.prefix(100))))'")
        }
        return refs
    }

    static func failure(_ error: ErrorReply, _ what: String) -> SyncFailure {
        switch error.code {
        case .notFound: return .notFound(error.message)
        case .accessDenied, .busy: return .refused(error.message)
        case .badRequest, .protocolViolation: return .protocolViolation("peer rejected the request: \(error.message)")
        default: return .refused("peer could not list \(what): \(error.message)")
        }
    }

    /// Waits up to `timeout` seconds in all for the message `match` returns a value for.
    static func wait<T>(_ connection: any PeerLink, _ timeout: Double, _ what: String,
                        _ match: (Message) throws(SyncFailure) -> T?) throws(SyncFailure) -> T {
        let started = Instant.now()
        while true {
            let left = timeout - Instant.now().seconds(since: started)
            guard left > 0 else { throw .timeout("timed out after \(SyncClient.formatSeconds(timeout)) s waiting for \(what)") }
            let message: Message
            do {
                message = try connection.nextMessage(timeout: left).wait()
            } catch TransportError.timeout {
                continue
            } catch let TransportError.closed(reason) {
                throw .connection("connection closed while waiting for \(what): \(reason)")
            } catch {
                throw .connection("\(error)")
            }
            if let value = try match(message) { return value }
        }
    }
}
