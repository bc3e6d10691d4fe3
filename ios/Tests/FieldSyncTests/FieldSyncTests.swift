// The Swift package's tests, mirroring the Kotlin ones
// (android/src/test/kotlin/dev/fieldsync/FieldSyncTest.kt). Run on macOS with
// `./build-xcframework.sh && swift test` from ios/. Not run where no Swift
// toolchain is (see ios/README.md).
import Foundation
import XCTest

@testable import FieldSync

let project = "build-out"
/// A planned route due east, about 745 m long.
let route = [GeoPoint(lat: 48.0, lon: 11.0), GeoPoint(lat: 48.0, lon: 11.01)]
let onRoute = GeoPoint(lat: 48.0, lon: 11.005)
/// About 1.1 km north of the route: quarantined.
let offRoute = GeoPoint(lat: 48.01, lon: 11.005)

func tempDir() throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fieldsync-swift-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}

func officeOnly(_ name: String = "office") throws -> (Replica, String) {
    let r = try Replica.open(path: try tempDir().appendingPathComponent("\(name).db").path, device: "\(name)-1")
    try r.setRoster(project: project, members: [Member(actor: r.actor(), user: "olga", role: .office)])
    return (r, try r.createSection(project: project, name: "Ringstraße", route: route))
}

/// Three phones of one crew, each knowing the roster, and a section the office created and shared.
struct Crew {
    let office: Replica
    let foreman: Replica
    let tech: Replica
    let section: String

    init() throws {
        let dir = try tempDir()
        office = try Replica.open(path: dir.appendingPathComponent("office.db").path, device: "office-1")
        foreman = try Replica.open(path: dir.appendingPathComponent("foreman.db").path, device: "foreman-1")
        tech = try Replica.open(path: dir.appendingPathComponent("tech.db").path, device: "tech-1")
        let roster = [
            Member(actor: office.actor(), user: "olga", role: .office),
            Member(actor: foreman.actor(), user: "fred", role: .foreman),
            Member(actor: tech.actor(), user: "tina", role: .technician),
        ]
        for r in [office, foreman, tech] { try r.setRoster(project: project, members: roster) }
        section = try office.createSection(project: project, name: "Hauptstraße north", route: route)
        _ = try foreman.applyChanges(changes: office.changesOf(section: section))
        _ = try tech.applyChanges(changes: office.changesOf(section: section))
    }

    /// Send everything `from` has of the section to `to`.
    @discardableResult
    func share(from: Replica, to: Replica) throws -> MergeReport {
        try to.applyChanges(changes: from.changesOf(section: section))
    }
}

/// Observer that keeps every view it is told.
final class Recorder: SectionObserver, @unchecked Sendable {
    private let lock = NSLock()
    private var seen: [SectionView] = []
    var values: [SectionView] {
        lock.lock()
        defer { lock.unlock() }
        return seen
    }

    func onUpdate(view: SectionView) throws {
        lock.lock()
        seen.append(view)
        lock.unlock()
    }
}

/// Assert that `body` throws a `FieldSyncError` that `matches`; returns it.
@discardableResult
func assertThrows(
    _ matches: (FieldSyncError) -> Bool,
    file: StaticString = #filePath,
    line: UInt = #line,
    _ body: () throws -> Void
) -> FieldSyncError? {
    do {
        try body()
        XCTFail("nothing was thrown", file: file, line: line)
    } catch let e as FieldSyncError {
        XCTAssertTrue(matches(e), "unexpected \(e)", file: file, line: line)
        return e
    } catch {
        XCTFail("not a FieldSyncError: \(error)", file: file, line: line)
    }
    return nil
}

func refused(_ rule: Rule) -> (FieldSyncError) -> Bool {
    { if case .RefusedByRule(let r, let reason) = $0 { return r == rule && !reason.isEmpty } else { return false } }
}

func notAuthorized(_ e: FieldSyncError) -> Bool { if case .NotAuthorized = e { return true } else { return false } }
func notFound(_ e: FieldSyncError) -> Bool { if case .NotFound = e { return true } else { return false } }
func invalidInput(_ e: FieldSyncError) -> Bool { if case .InvalidInput = e { return true } else { return false } }
func storage(_ e: FieldSyncError) -> Bool { if case .Storage = e { return true } else { return false } }
func updateRequired(_ e: FieldSyncError) -> Bool { if case .UpdateRequired = e { return true } else { return false } }

final class FieldSyncTests: XCTestCase {
    func testOpenAReplicaDeviceAndActor() throws {
        let path = try tempDir().appendingPathComponent("a.db").path
        var actor = ""
        do {
            let r = try Replica.open(path: path, device: "phone-a")
            XCTAssertEqual(r.device(), "phone-a")
            actor = r.actor()
            XCTAssertEqual(actor.count, 32)
        }
        XCTAssertEqual(try Replica.open(path: path, device: "phone-a").actor(), actor)
    }

    func testCreateASectionAndReadItsView() throws {
        let (r, id) = try officeOnly()
        let v = try r.section(id: id)
        XCTAssertEqual(v.name, "Ringstraße")
        XCTAssertEqual(v.project, project)
        XCTAssertEqual(v.route, route)
        XCTAssertEqual(v.state, .planned)
        XCTAssertEqual(v.progress, 0)
        XCTAssertFalse(v.heads.isEmpty)
    }

    func testEditEveryField() throws {
        let (r, id) = try officeOnly()
        XCTAssertEqual(try r.transition(section: id, to: .surveyed).decision, .accepted)
        let receipt = try r.recordProgress(section: id, percent: 15)
        XCTAssertEqual(receipt.section, id)
        XCTAssertEqual(receipt.changeHash.count, 64)
        _ = try r.reportLocation(section: id, point: onRoute)
        try r.setNotes(section: id, text: "trench along the north kerb")
        try r.spliceNotes(section: id, pos: 0, delete: 6, insert: "Trench")
        let photo = try r.addPhoto(section: id, uri: "file:///photos/1.jpg", caption: "manhole 3")
        _ = try r.renameSection(section: id, name: "Ringstraße west")
        let newRoute = route + [GeoPoint(lat: 48.001, lon: 11.02)]
        _ = try r.setRoute(section: id, route: newRoute)
        _ = try r.transition(section: id, to: .blocked, reason: "water main")
        let v = try r.section(id: id)
        XCTAssertEqual(v.state, .blocked)
        XCTAssertEqual(v.blocked, Blocked(reason: "water main", resumeTo: .surveyed))
        XCTAssertEqual(v.progress, 15)
        XCTAssertEqual(v.location?.point, onRoute)
        XCTAssertEqual(v.asBuilt.count, 1)
        XCTAssertEqual(v.notes, "Trench along the north kerb")
        XCTAssertEqual(v.photos.map(\.id), [photo])
        XCTAssertEqual(v.photos.first?.caption, "manhole 3")
        XCTAssertEqual(v.name, "Ringstraße west")
        XCTAssertEqual(v.route, newRoute)
        XCTAssertEqual(v.events.map(\.kind), [.sectionStarted, .sectionBlocked])
    }

    func testListSectionsAPageAtATime() throws {
        let (r, first) = try officeOnly()
        var ids = [first]
        for i in 1...4 { ids.append(try r.createSection(project: project, name: "S\(i)", route: route)) }
        var pages: [[SectionSummary]] = []
        var after: String? = nil
        while true {
            let page = try r.listSections(project: project, after: after, limit: 2)
            if page.isEmpty { break }
            pages.append(page)
            after = page.last?.id
        }
        XCTAssertEqual(pages.map(\.count), [2, 2, 1])
        XCTAssertEqual(pages.flatMap { $0.map(\.id) }, ids.sorted())
        XCTAssertEqual(try r.listSections(project: "other").count, 0)
    }

    func testRefusedByRuleOutOfRangeProgressStoresNothing() throws {
        let (r, id) = try officeOnly()
        let before = try r.history(section: id).count
        let e = assertThrows(refused(.progressRange)) { _ = try r.recordProgress(section: id, percent: 150) }
        XCTAssertFalse(e?.text.isEmpty ?? true)
        XCTAssertEqual(try r.history(section: id).count, before)
        XCTAssertEqual(try r.section(id: id).progress, 0)
    }

    func testRefusedByRuleTechnicianMayNotSkipNorCreate() throws {
        let crew = try Crew()
        assertThrows(refused(.transitionNotAllowed)) { _ = try crew.tech.transition(section: crew.section, to: .trenched) }
        assertThrows(refused(.officeOnly)) { _ = try crew.tech.createSection(project: project, name: "x", route: route) }
    }

    func testNotAuthorizedOutsideTheRoster() throws {
        let (office, id) = try officeOnly()
        let stranger = try Replica.open(path: try tempDir().appendingPathComponent("s.db").path, device: "stranger-1")
        _ = try stranger.applyChanges(changes: office.changesOf(section: id))
        assertThrows(notAuthorized) { _ = try stranger.recordProgress(section: id, percent: 5) }
    }

    func testNotFound() throws {
        let (r, _) = try officeOnly()
        assertThrows(notFound) { _ = try r.section(id: "nope") }
        assertThrows(notFound) { _ = try r.recordProgress(section: "nope", percent: 5) }
        assertThrows(notFound) { _ = try r.audit(section: "nope") }
        assertThrows(notFound) { _ = try r.observeSection(section: "nope", observer: Recorder()) }
        assertThrows(notFound) { _ = try r.sectionUpdates("nope") }
    }

    func testInvalidInput() throws {
        let (r, id) = try officeOnly()
        assertThrows(invalidInput) { _ = try r.reportLocation(section: id, point: GeoPoint(lat: 91, lon: 0)) }
        assertThrows(invalidInput) { try r.spliceNotes(section: id, pos: 10, delete: 0, insert: "x") }
        assertThrows(invalidInput) { _ = try r.viewAt(section: id, at: .heads(heads: ["zz"])) }
        assertThrows(invalidInput) { _ = try r.viewAt(section: id, at: .time(ms: 0)) }
        assertThrows(invalidInput) { _ = try r.addPhoto(section: id, uri: " ") }
        assertThrows(invalidInput) {
            _ = try r.applyChanges(changes: [SectionChange(section: id, bytes: Data([1, 2, 3]))])
        }
        let dir = try tempDir()
        let key = assertThrows(invalidInput) {
            _ = try Replica.open(path: dir.appendingPathComponent("k.db").path, device: "k", encryptionKey: Data(count: 32))
        }
        XCTAssertTrue(key?.text.contains("encryption") ?? false)
        _ = try Replica.open(path: dir.appendingPathComponent("d.db").path, device: "phone-a")
        assertThrows(invalidInput) { _ = try Replica.open(path: dir.appendingPathComponent("d.db").path, device: "phone-b") }
    }

    func testStorageCorruptMovedAsideNewerUntouched() throws {
        let dir = try tempDir()
        let corrupt = dir.appendingPathComponent("corrupt.db")
        try Data(repeating: 0x5a, count: 8192).write(to: corrupt)
        let e = assertThrows(storage) { _ = try Replica.open(path: corrupt.path, device: "p") }
        XCTAssertTrue(e?.text.contains("moved") ?? false)
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        XCTAssertTrue(names.contains { $0.hasPrefix("corrupt.corrupt-") })
        _ = try Replica.open(path: corrupt.path, device: "p") // a fresh store now

        let newer = dir.appendingPathComponent("newer.db")
        _ = try Replica.open(path: newer.path, device: "p") // released at once: closed
        let file = try FileHandle(forUpdating: newer)
        try file.seek(toOffset: 60) // SQLite header: user_version
        file.write(Data([0, 0, 0, 99]))
        try file.close()
        let bytes = try Data(contentsOf: newer)
        let n = assertThrows(updateRequired) { _ = try Replica.open(path: newer.path, device: "p") }
        XCTAssertTrue(n?.text.contains("newer") ?? false)
        XCTAssertEqual(try Data(contentsOf: newer), bytes)
    }

    func testAuditAndHistory() throws {
        let (r, id) = try officeOnly()
        _ = try r.recordProgress(section: id, percent: 5)
        let audit = try r.audit(section: id)
        XCTAssertEqual(audit.map(\.field), [.name, .route, .progress])
        XCTAssertTrue(audit.allSatisfy { $0.decision == .accepted && $0.user == "olga" && $0.role == .office })
        let history = try r.history(section: id)
        XCTAssertEqual(history.count, 2)
        XCTAssertEqual(history[1].deps, [history[0].hash])
    }

    func testTimeTravelByHeadsAndByTime() throws {
        let (r, id) = try officeOnly()
        Thread.sleep(forTimeInterval: 0.005) // stamps have millisecond resolution: keep each change in its own
        _ = try r.recordProgress(section: id, percent: 5)
        let at5 = try r.section(id: id).heads
        Thread.sleep(forTimeInterval: 0.005)
        _ = try r.recordProgress(section: id, percent: 8)
        XCTAssertEqual(try r.section(id: id).progress, 8)
        XCTAssertEqual(try r.viewAt(section: id, at: .heads(heads: at5)).progress, 5)
        let times = try r.history(section: id).map(\.timeMs)
        XCTAssertEqual(try r.viewAt(section: id, at: .time(ms: UInt64(times[1]))).progress, 5)
        XCTAssertEqual(try r.viewAt(section: id, at: .time(ms: UInt64(times[0]))).progress, 0)
    }

    func testQuarantinedPointAcceptedByTheForeman() throws {
        let crew = try Crew()
        let receipt = try crew.tech.reportLocation(section: crew.section, point: offRoute)
        guard case .quarantined = receipt.decision else { return XCTFail("decision \(receipt.decision)") }
        try crew.share(from: crew.tech, to: crew.foreman)
        let q = try XCTUnwrap(try crew.foreman.section(id: crew.section).quarantined.first)
        XCTAssertEqual(q.editId, receipt.editId)
        XCTAssertGreaterThan(q.distanceM, 1000)
        assertThrows(refused(.acceptRequiresForeman)) { _ = try crew.tech.acceptPoint(section: crew.section, pointEdit: q.editId) }
        _ = try crew.foreman.acceptPoint(section: crew.section, pointEdit: q.editId)
        let v = try crew.foreman.section(id: crew.section)
        XCTAssertEqual(v.location?.point, offRoute)
        XCTAssertTrue(v.quarantined.isEmpty)
    }

    func testConflictsAfterMergingTwoReplicas() throws {
        let crew = try Crew()
        _ = try crew.tech.recordProgress(section: crew.section, percent: 5) // same base: a contest
        Thread.sleep(forTimeInterval: 0.005) // the foreman's stamp is the later one: "max wins" decides
        _ = try crew.foreman.recordProgress(section: crew.section, percent: 8)
        let atTech = try crew.share(from: crew.foreman, to: crew.tech)
        try crew.share(from: crew.tech, to: crew.foreman)
        XCTAssertEqual(try crew.tech.section(id: crew.section).progress, 8)
        XCTAssertEqual(try crew.tech.section(id: crew.section), try crew.foreman.section(id: crew.section))
        let conflicts = try crew.tech.conflicts(section: crew.section)
        XCTAssertEqual(conflicts, try crew.foreman.conflicts(section: crew.section))
        let contest = try XCTUnwrap(conflicts.first { $0.kind == .contest })
        XCTAssertEqual(contest.field, .progress)
        XCTAssertEqual(contest.rule, .progressMaxWins)
        XCTAssertEqual(Set(contest.candidates.compactMap(\.user)), ["tina", "fred"])
        let mine = try XCTUnwrap(atTech.reconciliation.first { $0.field == .progress })
        guard case .overridden(_, let rule, _) = mine.outcome else { return XCTFail("outcome \(mine.outcome)") }
        XCTAssertEqual(rule, .progressMaxWins)
        XCTAssertEqual(atTech.sectionsChanged, [crew.section])
    }

    func testObserverCurrentFirstThenChangesCancelTwiceHarmless() throws {
        let (r, id) = try officeOnly()
        let other = try r.createSection(project: project, name: "other", route: route)
        let rec = Recorder()
        let handle = try r.observeSection(section: id, observer: rec)
        XCTAssertEqual(rec.values.map(\.progress), [0])
        _ = try r.recordProgress(section: id, percent: 5)
        _ = try r.recordProgress(section: other, percent: 7) // another section: nothing sent here
        assertThrows(refused(.progressRange)) { _ = try r.recordProgress(section: id, percent: 150) }
        try r.setNotes(section: id, text: "hello")
        XCTAssertEqual(rec.values.map(\.progress), [0, 5, 5])
        XCTAssertEqual(rec.values.last?.notes, "hello")
        handle.cancel()
        _ = try r.recordProgress(section: id, percent: 9)
        handle.cancel()
        XCTAssertEqual(rec.values.count, 3)
    }

    func testAThrowingObserverStopsNothing() throws {
        final class Thrower: SectionObserver, @unchecked Sendable {
            struct Bug: Error {}
            func onUpdate(view: SectionView) throws { throw Bug() }
        }
        let (r, id) = try officeOnly()
        let thrower = try r.observeSection(section: id, observer: Thrower())
        let rec = Recorder()
        let handle = try r.observeSection(section: id, observer: rec)
        _ = try r.recordProgress(section: id, percent: 4)
        XCTAssertEqual(rec.values.map(\.progress), [0, 4])
        thrower.cancel()
        handle.cancel()
    }

    func testSectionUpdatesFirstAsItIsThenAfterAWrite() async throws {
        let (r, id) = try officeOnly()
        _ = try r.recordProgress(section: id, percent: 5)
        var updates = try r.sectionUpdates(id).makeAsyncIterator()
        let first = await updates.next()
        XCTAssertEqual(first?.progress, 5)
        _ = try await r.run { try $0.recordProgress(section: id, percent: 8) }
        let second = await updates.next()
        XCTAssertEqual(second?.progress, 8)
    }

    func testConflictUpdatesWhenAMergeBringsAContest() async throws {
        let crew = try Crew()
        _ = try crew.tech.recordProgress(section: crew.section, percent: 5)
        _ = try crew.foreman.recordProgress(section: crew.section, percent: 8)
        var updates = crew.tech.conflictUpdates(crew.section).makeAsyncIterator()
        let first = await updates.next()
        XCTAssertEqual(first?.count, 0)
        let changes = try crew.foreman.changesOf(section: crew.section)
        _ = try await crew.tech.run { try $0.applyChanges(changes: changes) }
        let second = await updates.next()
        XCTAssertGreaterThan(second?.count ?? 0, 0)
    }

    func testSyncStatusUpdatesCountPendingChanges() async throws {
        let (r, id) = try officeOnly()
        var updates = r.syncStatusUpdates().makeAsyncIterator()
        let before = await updates.next()
        _ = try await r.run { try $0.recordProgress(section: id, percent: 3) }
        let after = await updates.next()
        XCTAssertEqual(after?.pendingChanges, (before?.pendingChanges ?? -1) + 1)
        XCTAssertNil(try r.syncStatus().lastSuccessMs)
    }

    func testAsyncOpenAndRun() async throws {
        let path = try tempDir().appendingPathComponent("s.db").path
        let r = try await openReplica(path: path, device: "s-1")
        let v = try await r.run { replica -> SectionView in
            let me = Member(actor: replica.actor(), user: "olga", role: .office)
            try replica.setRoster(project: project, members: [me])
            return try replica.section(id: replica.createSection(project: project, name: "async", route: route))
        }
        XCTAssertEqual(v.name, "async")
    }

    func testRoundTripEditToViewMeasured() throws {
        let (r, id) = try officeOnly("bench")
        let n = 300, warmup = 50
        var micros: [Double] = []
        for i in 0..<(warmup + n) {
            let start = DispatchTime.now().uptimeNanoseconds
            try r.setNotes(section: id, text: "note \(i)")
            let v = try r.section(id: id)
            let took = Double(DispatchTime.now().uptimeNanoseconds - start) / 1000
            XCTAssertEqual(v.notes, "note \(i)")
            if i >= warmup { micros.append(took) }
        }
        micros.sort()
        print(String(format: "BENCH edit→view round trip (Swift): p50 %.3f ms, p99 %.3f ms",
                     micros[n / 2] / 1000, micros[n * 99 / 100] / 1000))
    }
}
