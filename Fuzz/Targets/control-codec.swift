import GutsControl

/// The control socket's codec: request lines as the node reads them from local clients,
/// response lines as `guts` reads them from the node (answers to each kind of request,
/// gossip events, errors).
///
/// Input: one line (without its newline).
///
/// Properties: an accepted request re-encodes to a line that decodes to the same request
/// and id; an accepted response re-encodes to a line that decodes again, and encoding is
/// stable after that first round (numbers are written with at most 3 decimals).
func fuzzControlCodec(_ data: [UInt8]) {
    let (id, request) = ControlCodec.decodeRequest(data)
    if case let .success(r) = request {
        let line = ControlCodec.encode(r, id: id ?? 0)
        fuzzCheck(line.last == 0x0A, "a request line without its newline")
        let again = ControlCodec.decodeRequest(Array(line.dropLast()))
        fuzzCheck(again.id == (id ?? 0) && again.request == .success(r), "request \(r.command) does not survive re-encoding")
    }
    for asked in [ControlRequest.status, .peers, .publish(topic: "t", data: [1]), .subscribe(topics: ["t"])] {
        guard let (rid, response) = try? ControlCodec.decodeResponse(data, answering: asked) else { continue }
        let once = ControlCodec.encode(response, id: rid)
        guard let (rid2, response2) = try? ControlCodec.decodeResponse(Array(once.dropLast()), answering: asked) else {
            fuzzFail("a response to \(asked.command) does not survive re-encoding")
        }
        fuzzCheck(rid2 == rid, "response id changed")
        fuzzCheck(ControlCodec.encode(response2, id: rid2) == once, "response encoding to \(asked.command) is not stable")
    }
}
