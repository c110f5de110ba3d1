import GutsGit
import GutsIdentity

/// The identity and signed-refs checks of `guts objects verify` (guts-identity(5)):
/// the identity chain verifies; every signed-refs parses, names this repository and its
/// namespace's peer, carries a valid signature, and its namespace holds exactly the refs
/// it lists. A signed-refs of a peer that is no longer a delegate is a warning.
public enum TrustVerifier {
    public static func check(_ repo: Repository) -> [Problem] {
        var problems: [Problem] = []
        func fail(_ subject: String, _ kind: ProblemKind, _ location: String, _ message: String) {
            problems.append(Problem(.error, subject: subject, kind: kind, location: location, message: message))
        }
        let refs: [Ref]
        do {
            refs = try repo.listRefs().filter { $0.symbolicTarget == nil }
        } catch {
            return [Problem(.error, subject: "refs", kind: .badRef, location: "refs", message: "cannot read refs: \(error)")]
        }
        let sigrefs = refs.compactMap { r in TrustLayout.sigrefsDelegate(r.name).map { (r, $0) } }
        guard let tip = refs.first(where: { $0.name == TrustLayout.identityRef })?.id else {
            for (r, _) in sigrefs {
                problems.append(Problem(.warning, subject: r.id.hex, kind: .badSignedRefs, location: r.name,
                                        message: "signed refs in a repository without identity"))
            }
            return problems
        }
        let chain: IdentityChain
        do {
            chain = try TrustStore.loadChain(repo, tip: tip)
        } catch {
            fail(tip.hex, .badIdentity, TrustLayout.identityRef, "\(error)")
            return problems
        }
        for (ref, delegate) in sigrefs {
            let ns = TrustLayout.namespace(delegate)
            let signed: SignedRefs
            do {
                signed = try TrustStore.loadSignedRefs(repo, commit: ref.id)
                guard signed.repository == chain.id, signed.delegate == delegate, signed.isSignatureValid else {
                    try TrustStore.verify(signed, repository: chain.id, delegate: delegate, identity: chain.current)
                    continue
                }
            } catch {
                fail(ref.id.hex, .badSignedRefs, ref.name, "\(error)")
                continue
            }
            if !chain.current.delegates.contains(delegate) {
                problems.append(Problem(.warning, subject: ref.id.hex, kind: .badSignedRefs, location: ref.name,
                                        message: "\(delegate) is not a delegate of identity version \(chain.current.version)"))
            }
            let present = Dictionary(refs.filter { $0.name.hasPrefix(ns) && $0.name != ref.name }
                .map { (String($0.name.dropFirst(ns.count)), $0.id) }, uniquingKeysWith: { a, _ in a })
            let expected = signed.refMap
            for (name, id) in expected.sorted(by: { $0.key < $1.key }) where present[name] != id {
                fail(id.hex, .badSignedRefs, ns + name, present[name].map { "is at \($0), but \(delegate.short) signed \(id) (sequence \(signed.sequence))" }
                    ?? "is missing, but \(delegate.short) signed it at \(id) (sequence \(signed.sequence))")
            }
            for (name, id) in present.sorted(by: { $0.key < $1.key }) where expected[name] == nil {
                fail(id.hex, .badSignedRefs, ns + name, "is not in \(delegate.short)'s signed refs (sequence \(signed.sequence))")
            }
        }
        return problems
    }
}
