// Sync, mirroring android/src/test/kotlin/dev/fieldsync/SyncTest.kt: through a
// real `fieldsync serve` on loopback when FIELDSYNC_BIN names the binary
// (`cargo build -p fieldsync`; those tests are skipped otherwise), and the
// error variants through app transports that need no server. macOS only; not
// run where no Swift toolchain is (see ios/README.md).
import Foundation
import XCTest

@testable import FieldSync

/// `fieldsync serve` on a fresh data directory, with the project and its users set up.
final class TestServer {
    let dir: URL
    let url: URL
    private let bin: String
    private let process = Process()

    init() throws {
        guard let bin = ProcessInfo.processInfo.environment["FIELDSYNC_BIN"] else {
            throw XCTSkip("FIELDSYNC_BIN (the fieldsync binary) is not set")
        }
        self.bin = bin
        dir = try tempDir()
        _ = try Self.run(bin, ["--json", "admin", "--data", dir.path, "create-project", project])
        for (user, role) in [("olga", "office"), ("fred", "foreman"), ("tina", "technician")] {
            _ = try Self.run(bin, ["--json", "admin", "--data", dir.path, "add-user", user, "--project", project, "--role", role])
        }
        let out = Pipe()
        process.executableURL = URL(fileURLWithPath: bin)
        process.arguments = ["serve", "--data", dir.path, "--listen", "127.0.0.1:0"]
        process.standardOutput = out
        try process.run()
        var text = ""
        while !text.contains("\n") {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
        guard let range = text.range(of: #"http://\S+"#, options: .regularExpression) else {
            throw NSError(domain: "TestServer", code: 1, userInfo: [NSLocalizedDescriptionKey: "no address in \(text)"])
        }
        url = URL(string: String(text[range]))!
    }

    deinit { stop() }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    /// Enroll a device for `user`: its id and token.
    func enroll(_ user: String) throws -> (device: String, token: String) {
        let out = try Self.run(bin, ["--json", "admin", "--data", dir.path, "enroll", "--user", user])
        let json = try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [String: Any]
        return (json["device_id"] as! String, json["token"] as! String)
    }

    func revoke(_ device: String) throws {
        _ = try Self.run(bin, ["--json", "admin", "--data", dir.path, "revoke", device])
    }

    /// A replica for `user`, enrolled and connected over the built-in transport.
    func device(_ user: String, token: String? = nil) throws -> Replica {
        let r = try Replica.open(path: try tempDir().appendingPathComponent("\(user).db").path, device: "\(user)-phone")
        try r.connect(serverUrl: url.absoluteString, token: token ?? enroll(user).token, project: project)
        return r
    }

    private static func run(_ bin: String, _ args: [String]) throws -> String {
        let p = Process()
        let out = Pipe()
        p.executableURL = URL(fileURLWithPath: bin)
        p.arguments = args
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard p.terminationStatus == 0 else {
            throw NSError(domain: "fieldsync", code: Int(p.terminationStatus), userInfo: [NSLocalizedDescriptionKey: text])
        }
        return text
    }
}

/// An app transport that fails every round with what `fail` throws.
final class Failing: AppTransport, @unchecked Sendable {
    let fail: () -> Error
    init(_ fail: @escaping () -> Error) { self.fail = fail }
    func roundTrip(request: Data) throws -> Data { throw fail() }
}

/// `URLSessionTransport` that counts the round trips it starts and calls `onRound` with each
/// one's number first, on the sync's thread, before its request goes out.
final class RoundCountingTransport: AppTransport, @unchecked Sendable {
    private let through: URLSessionTransport
    private let lock = NSLock()
    private var started = 0
    private var onRoundCall: (Int) -> Void = { _ in }

    init(server: URL, token: String) { through = URLSessionTransport(server: server, token: token) }

    /// Round trips started so far.
    var rounds: Int { lock.lock(); defer { lock.unlock() }; return started }

    var onRound: (Int) -> Void {
        get { lock.lock(); defer { lock.unlock() }; return onRoundCall }
        set { lock.lock(); defer { lock.unlock() }; onRoundCall = newValue }
    }

    func roundTrip(request: Data) throws -> Data {
        let (round, call): (Int, (Int) -> Void) = {
            lock.lock(); defer { lock.unlock() }
            started += 1
            return (started, onRoundCall)
        }()
        call(round)
        return try through.roundTrip(request: request)
    }
}

/// A value handed from the test to the transport's thread once it exists (the task to cancel).
final class Handoff<T>: @unchecked Sendable {
    private let ready = DispatchSemaphore(value: 0)
    private var value: T?
    func put(_ v: T) { value = v; ready.signal() }
    /// Waits until `put`; the semaphore orders the write before this read.
    func take() -> T { ready.wait(); defer { ready.signal() }; return value! }
}

func offline(_ e: FieldSyncError) -> Bool { if case .Offline = e { return true } else { return false } }

/// Sync the replicas in turn until their views of `section` agree and nothing is pending.
func converge(_ section: String, _ replicas: [Replica]) async throws {
    for _ in 0..<5 {
        for r in replicas { try await r.sync() }
        let views = try replicas.map { try $0.section(id: section) }
        let pending = try replicas.map { try $0.syncStatus().pendingChanges }
        if views.allSatisfy({ $0 == views[0] }) && pending.allSatisfy({ $0 == 0 }) { return }
    }
    XCTFail("no convergence")
}

final class SyncTests: XCTestCase {
    func testTwoReplicasConvergeThroughARealServer() async throws {
        let server = try TestServer()
        let olga = try server.device("olga")
        let tina = try server.device("tina")
        try await olga.sync()
        let id = try olga.createSection(project: project, name: "Hauptstraße north", route: route)
        _ = try olga.transition(section: id, to: .surveyed)
        let up = try await olga.sync()
        XCTAssertEqual(up.confirmed, 2)
        let rounds = try olga.syncStatus().recentRounds
        XCTAssertGreaterThanOrEqual(rounds.count, 2)
        XCTAssertEqual(rounds.last?.bytesSent, up.bytesSent)
        let down = try await tina.sync()
        XCTAssertTrue(down.sectionsChanged.contains(id))

        _ = try tina.recordProgress(section: id, percent: 5)
        Thread.sleep(forTimeInterval: 0.005)
        _ = try olga.recordProgress(section: id, percent: 8)
        try await olga.sync()
        let report = try await tina.sync()
        let mine = try XCTUnwrap(report.reconciliation.first { $0.field == .progress })
        guard case .overridden(let by, let rule, let reason) = mine.outcome else {
            return XCTFail("tina's progress should be overridden: \(mine.outcome)")
        }
        XCTAssertEqual(by?.user, "olga")
        XCTAssertEqual(rule, .progressMaxWins)
        XCTAssertFalse(reason.isEmpty)
        try await converge(id, [olga, tina])
        XCTAssertEqual(try tina.section(id: id).progress, 8)
    }

    func testBackgroundSyncSendsEditsAndStatusUpdatesFollow() async throws {
        let server = try TestServer()
        let olga = try server.device("olga")
        try await olga.sync()
        let id = try olga.createSection(project: project, name: "Ringstraße", route: route)
        try olga.startBackgroundSync(config: SyncConfig(intervalMs: 200, editDebounceMs: 20, minBackoffMs: 50, maxBackoffMs: 500))
        for await status in olga.syncStatusUpdates() where status.pendingChanges == 0 && status.lastSuccessMs != nil { break }
        olga.setConnectivity(online: false)
        try await Task.sleep(nanoseconds: 300_000_000) // a periodic round already under way may finish
        _ = try olga.recordProgress(section: id, percent: 4)
        try await Task.sleep(nanoseconds: 400_000_000)
        XCTAssertEqual(try olga.syncStatus().pendingChanges, 1)
        olga.setConnectivity(online: true)
        for await status in olga.syncStatusUpdates() where status.pendingChanges == 0 { break }
        olga.stopBackgroundSync()
    }

    func testTheLiveChannelBringsAnotherDevicesEditAtOnce() async throws {
        let server = try TestServer()
        let olga = try server.device("olga")
        let tina = try server.device("tina")
        try await olga.sync()
        let id = try olga.createSection(project: project, name: "Am Anger", route: route)
        try await olga.sync()
        try await tina.sync()
        // No periodic sync within the test: only the live channel's notice can bring the edit.
        try tina.startBackgroundSync(config: SyncConfig(intervalMs: 600_000, editDebounceMs: 20, minBackoffMs: 50, maxBackoffMs: 500))
        try await Task.sleep(nanoseconds: 500_000_000) // let the live channel connect
        _ = try olga.recordProgress(section: id, percent: 6)
        try await olga.sync()
        for await view in try tina.sectionUpdates(id) where view.progress == 6 { break }
        tina.stopBackgroundSync()
    }

    func testURLSessionTransportConvergesWithTheBuiltInOne() async throws {
        let server = try TestServer()
        let olga = try server.device("olga")
        let fred = try Replica.open(path: try tempDir().appendingPathComponent("fred.db").path, device: "fred-phone")
        try fred.connectWith(transport: URLSessionTransport(server: server.url, token: server.enroll("fred").token), project: project)
        try await olga.sync()
        let id = try olga.createSection(project: project, name: "Bahnhofstraße", route: route)
        try await olga.sync()
        try await fred.sync()
        _ = try fred.transition(section: id, to: .surveyed)
        try await converge(id, [olga, fred])
        XCTAssertEqual(try olga.section(id: id).state, .surveyed)
    }

    /// Mirrors CancelTest.kt: the task of `sync()` is cancelled from inside its 2nd round trip.
    /// `withTaskCancellationHandler` calls `cancelSync()` within `cancel()`, on the transport's
    /// thread, so the engine hears of it before that round's answer is committed.
    func testACancelledSyncStopsBeforeItsNextRoundKeepsWhatWasAnsweredAndTheNextSyncFinishes() async throws {
        let server = try TestServer()
        let olga = try server.device("olga")
        let transport = RoundCountingTransport(server: server.url, token: try server.enroll("fred").token)
        let fred = try Replica.open(path: try tempDir().appendingPathComponent("fred.db").path, device: "fred-phone")
        try fred.connectWith(transport: transport, project: project)
        try await olga.sync()
        let site = try olga.createSection(project: project, name: "Hauptstraße north", route: route)
        try await olga.sync()
        try await fred.sync() // the roster and the site: fred may edit it
        // Olga's sections, each with 40 kB of incompressible notes: together several 1 MiB responses.
        var bulk: [String] = []
        for i in 0..<96 {
            let id = try olga.createSection(project: project, name: "Bulk \(i)", route: route)
            let letters = (0..<40_000).map { _ in UInt8.random(in: UInt8(ascii: "a")...UInt8(ascii: "z")) }
            try olga.setNotes(section: id, text: String(decoding: letters, as: UTF8.self))
            bulk.append(id)
        }
        try await olga.sync()
        _ = try fred.recordProgress(section: site, percent: 8)
        try fred.setNotes(section: site, text: "trench open")
        XCTAssertEqual(try fred.syncStatus().pendingChanges, 2)
        let roundsRecorded = try fred.syncStatus().recentRounds.count

        let first = transport.rounds + 1
        let syncing = Handoff<Task<SyncReport, Error>>()
        transport.onRound = { round in if round == first + 1 { syncing.take().cancel() } }
        let task = Task { try await fred.sync() }
        syncing.put(task)
        let outcome = await task.result
        transport.onRound = { _ in }
        guard case .failure(let error) = outcome, error is CancellationError else {
            return XCTFail("sync() ended with \(outcome)")
        }
        XCTAssertEqual(transport.rounds - first + 1, 2, "round trips of the cancelled sync")

        // What was answered is kept: fred's edits (confirmed by the first answer), the sections
        // of both answers, and both rounds in the status.
        XCTAssertEqual(try fred.syncStatus().pendingChanges, 0)
        XCTAssertEqual(try fred.syncStatus().recentRounds.count, roundsRecorded + 2)
        let received = try bulk.filter { id in (try? fred.section(id: id)) == (try olga.section(id: id)) }
        XCTAssertFalse(received.isEmpty)
        XCTAssertLessThan(received.count, bulk.count)

        // The next sync goes on from there: the rest arrives, nothing of fred's goes again.
        let atCancel = transport.rounds
        let rest = try await fred.sync()
        XCTAssertEqual(rest.confirmed, 0, "fred's edits confirmed again")
        XCTAssertGreaterThanOrEqual(rest.rounds, 1)
        XCTAssertEqual(transport.rounds - atCancel, Int(rest.rounds))
        XCTAssertTrue(rest.sectionsChanged.allSatisfy { !received.contains($0) }, "\(rest.sectionsChanged)")
        for id in bulk { XCTAssertEqual(try fred.section(id: id), try olga.section(id: id)) }
        try await converge(site, [olga, fred])
        XCTAssertEqual(try olga.section(id: site).progress, 8)
        XCTAssertEqual(try olga.section(id: site).notes, "trench open")
    }

    func testNotAuthorizedBadTokenRevokedDeviceOutsider() async throws {
        let server = try TestServer()
        let stranger = try server.device("x", token: String(repeating: "0", count: 64))
        assertThrows(notAuthorized) { _ = try stranger.syncNow() }
        let outsider = try server.device("sam") // enrolled, not a member of the project
        assertThrows(notAuthorized) { _ = try outsider.syncNow() }
        let tina = try server.enroll("tina")
        let r = try server.device("tina", token: tina.token)
        try await r.sync()
        try server.revoke(tina.device)
        assertThrows(notAuthorized) { _ = try r.syncNow() }
    }

    func testOfflineAndNotAuthorizedThroughAppTransportsWithoutAServer() throws {
        let (r, _) = try officeOnly()
        assertThrows(invalidInput) { _ = try r.syncNow() } // not connected yet
        try r.connectWith(transport: Failing { TransportError.Unreachable(detail: "no signal") }, project: project)
        let e = assertThrows(offline) { _ = try r.syncNow() }
        XCTAssertTrue(e?.text.contains("no signal") ?? false)
        XCTAssertEqual(try r.syncStatus().pendingChanges, 1, "the edit is kept")
        XCTAssertNotNil(try r.syncStatus().lastError)
        XCTAssertEqual(try r.syncStatus().lastProblem, .offline)

        // The log hook: the engine's lines reach the app's own logging.
        final class Lines: LogSink, @unchecked Sendable {
            let lock = NSLock()
            var seen: [String] = []
            func log(level: LogLevel, target: String, message: String) {
                lock.lock(); defer { lock.unlock() }
                seen.append("\(level) \(target) \(message)")
            }
        }
        let lines = Lines()
        setLogSink(sink: lines, maxLevel: .info)
        assertThrows(offline) { _ = try r.syncNow() }
        setLogSink(sink: nil, maxLevel: .info)
        XCTAssertTrue(lines.seen.contains { $0.contains("sync failed") && $0.contains("no signal") }, "\(lines.seen)")

        try r.connectWith(transport: Failing { URLError(.notConnectedToInternet) }, project: project)
        assertThrows(offline) { _ = try r.syncNow() }
        let body = Data(#"{"error":"unauthorized","message":"revoked"}"#.utf8)
        try r.connectWith(transport: Failing { TransportError.Server(status: 401, body: body) }, project: project)
        assertThrows(notAuthorized) { _ = try r.syncNow() }
        try r.connect(serverUrl: "http://127.0.0.1:1", token: "t", project: project)
        assertThrows(offline) { _ = try r.syncNow() }
    }
}
