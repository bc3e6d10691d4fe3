// Swift idioms over the generated bindings (Generated/FieldSync.swift, made by
// build-xcframework.sh from the Rust library): AsyncSequences for the
// observers, async forms for calls that block, an AppTransport over
// URLSession, and the text of an error.
// Nothing here passes a call through unchanged; everything else is the
// generated API itself.
import Foundation

// MARK: - Observers as AsyncSequences

private final class SectionRelay: SectionObserver, @unchecked Sendable {
    private let continuation: AsyncStream<SectionView>.Continuation
    init(_ continuation: AsyncStream<SectionView>.Continuation) { self.continuation = continuation }
    func onUpdate(view: SectionView) throws { continuation.yield(view) }
}

private final class ConflictsRelay: ConflictsObserver, @unchecked Sendable {
    private let continuation: AsyncStream<[ConflictRecord]>.Continuation
    init(_ continuation: AsyncStream<[ConflictRecord]>.Continuation) { self.continuation = continuation }
    func onUpdate(conflicts: [ConflictRecord]) throws { continuation.yield(conflicts) }
}

private final class SyncStatusRelay: SyncStatusObserver, @unchecked Sendable {
    private let continuation: AsyncStream<SyncStatus>.Continuation
    init(_ continuation: AsyncStream<SyncStatus>.Continuation) { self.continuation = continuation }
    func onUpdate(status: SyncStatus) throws { continuation.yield(status) }
}

private final class SectionListRelay: SectionListObserver, @unchecked Sendable {
    private let continuation: AsyncStream<SectionPage>.Continuation
    init(_ continuation: AsyncStream<SectionPage>.Continuation) { self.continuation = continuation }
    func onUpdate(page: SectionPage) throws { continuation.yield(page) }
}

private final class SyncActivityRelay: SyncStatusObserver, @unchecked Sendable {
    private let continuation: AsyncStream<SyncActivity>.Continuation
    init(_ continuation: AsyncStream<SyncActivity>.Continuation) { self.continuation = continuation }
    func onUpdate(status: SyncStatus) throws { continuation.yield(status.activity) }
}

private final class PhotosRelay: PhotosObserver, @unchecked Sendable {
    private let continuation: AsyncStream<[PhotoStatus]>.Continuation
    init(_ continuation: AsyncStream<[PhotoStatus]>.Continuation) { self.continuation = continuation }
    func onUpdate(photos: [PhotoStatus]) throws { continuation.yield(photos) }
}

private final class FetchProgressRelay: PhotoFetchProgress, @unchecked Sendable {
    private let report: @Sendable (UInt64, UInt64) -> Void
    init(_ report: @escaping @Sendable (UInt64, UInt64) -> Void) { self.report = report }
    func onProgress(received: UInt64, size: UInt64) throws { report(received, size) }
}

extension Replica {
    /// The validated view of `section`: the current one first, then every
    /// change (local writes and merges). Iterating keeps an observer
    /// registered; ending the iteration (or cancelling its task) cancels it.
    /// Only the newest view waits for a slow consumer. Throws
    /// `FieldSyncError.NotFound` if there is no such section.
    ///
    ///     for await view in try replica.sectionUpdates(id) { label.text = "\(view.progress) %" }
    public func sectionUpdates(_ section: String) throws -> AsyncStream<SectionView> {
        let (stream, continuation) = AsyncStream.makeStream(of: SectionView.self, bufferingPolicy: .bufferingNewest(1))
        let handle = try observeSection(section: section, observer: SectionRelay(continuation))
        continuation.onTermination = { _ in handle.cancel() }
        return stream
    }

    /// The conflict records of `section` (of every section when `nil`): the current ones first, then every change.
    public func conflictUpdates(_ section: String? = nil) -> AsyncStream<[ConflictRecord]> {
        let (stream, continuation) = AsyncStream.makeStream(of: [ConflictRecord].self, bufferingPolicy: .bufferingNewest(1))
        let handle = observeConflicts(section: section, observer: ConflictsRelay(continuation))
        continuation.onTermination = { _ in handle.cancel() }
        return stream
    }

    /// The sync status: the current one first, then every change: each local write, each step
    /// of a sync (by `sync()` or background sync: connecting, each round's progress, done or
    /// failed), each connectivity hint. `activity` is what to show; `lastProblem` what to act on
    /// (`.notAuthorized` means sign in again).
    public func syncStatusUpdates() -> AsyncStream<SyncStatus> {
        let (stream, continuation) = AsyncStream.makeStream(of: SyncStatus.self, bufferingPolicy: .bufferingNewest(1))
        let handle = observeSyncStatus(observer: SyncStatusRelay(continuation))
        continuation.onTermination = { _ in handle.cancel() }
        return stream
    }

    /// What sync is doing, for the sync indicator: `.offline`, `.connecting`, `.syncing(progress:)`
    /// (the sync's progress so far), `.upToDate`, `.waiting` (edits wait for the next sync),
    /// `.needsAttention(problem:detail:)`. The current activity first, then with each status change.
    public func syncActivityUpdates() -> AsyncStream<SyncActivity> {
        let (stream, continuation) = AsyncStream.makeStream(of: SyncActivity.self, bufferingPolicy: .bufferingNewest(1))
        let handle = observeSyncStatus(observer: SyncActivityRelay(continuation))
        continuation.onTermination = { _ in handle.cancel() }
        return stream
    }

    /// A live section list: the page `query` selects (by project, state, conflicts, unsynced
    /// edits or area; by id or last change), first as it is, then after every change to its rows,
    /// local writes and other devices' edits as each sync round merges them. Each row says
    /// whether the section has unsynced edits (`unsynced`). Only the newest page waits for a
    /// slow consumer.
    ///
    ///     for await page in replica.sectionListUpdates(SectionQuery(project: id, withUnsyncedEdits: true)) { rows = page.rows }
    public func sectionListUpdates(_ query: SectionQuery = SectionQuery()) -> AsyncStream<SectionPage> {
        let (stream, continuation) = AsyncStream.makeStream(of: SectionPage.self, bufferingPolicy: .bufferingNewest(1))
        let handle = observeSections(query: query, observer: SectionListRelay(continuation))
        continuation.onTermination = { _ in handle.cancel() }
        return stream
    }

    /// The photos of `section`, each with where its bytes are (`PhotoState`: on this device only,
    /// uploading, on the server, thumbnail only, downloading, available): the current list first,
    /// then whenever a photo is added or arrives, or its bytes move (each chunk a sync sends or
    /// fetches, each chunk `fetchPhoto` fetches). Only the newest list waits for a slow
    /// consumer. Photos travel over the built-in transport only (`connect`), not `connectWith`.
    /// Throws `FieldSyncError.NotFound` if there is no such section.
    public func photoUpdates(_ section: String) throws -> AsyncStream<[PhotoStatus]> {
        let (stream, continuation) = AsyncStream.makeStream(of: [PhotoStatus].self, bufferingPolicy: .bufferingNewest(1))
        let handle = try observePhotos(section: section, observer: PhotosRelay(continuation))
        continuation.onTermination = { _ in handle.cancel() }
        return stream
    }
}

extension SyncProgress {
    /// Uploaded of to upload, 0 to 1 (1 when there was nothing to send): for a progress bar.
    public var uploadFraction: Double {
        toUpload == 0 ? 1 : min(1, Double(uploaded) / Double(toUpload))
    }

    /// Changes and documents received of their total, 0 to 1; nil while the server has not said
    /// how much it holds (show an indeterminate bar then).
    public var downloadFraction: Double? {
        guard let changes = changesToDownload, let documents = documentsToDownload else { return nil }
        let total = changes + documents
        return total == 0 ? 1 : min(1, Double(downloadedChanges + downloadedDocuments) / Double(total))
    }
}

// MARK: - Blocking calls, off the caller's thread

/// Run `work` on a global queue and await its result.
private func offCallerThread<T>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global(qos: .userInitiated).async {
            continuation.resume(with: Result { try work() })
        }
    }
}

extension Replica {
    /// `offCallerThread` for a sync or photo fetch, with a `Cancellation` made before it starts: if
    /// the task is cancelled meanwhile, the cancellation is cancelled at once from the cancelling
    /// thread, so the work stops at its next round or chunk (or sends nothing, if it had not begun),
    /// and this throws `CancellationError` once it has (what was answered before is kept). Work
    /// that finished anyway returns its result.
    private func stoppable<T>(_ work: @escaping @Sendable (Cancellation) throws -> T) async throws -> T {
        let cancellation = Cancellation()
        return try await withTaskCancellationHandler {
            do {
                return try await offCallerThread { try work(cancellation) }
            } catch {
                // Stopped by the cancel (the engine says `Offline`, "cancelled"): say so the Swift way.
                if Task.isCancelled { throw CancellationError() }
                throw error
            }
        } onCancel: {
            cancellation.cancel()
        }
    }

    /// Run `body` on this replica off the caller's thread. Every replica call
    /// touches the disk and writes return only once durable, so from the main
    /// actor: `try await replica.run { try $0.recordProgress(section: id, percent: 40) }`.
    public func run<T>(_ body: @escaping @Sendable (Replica) throws -> T) async throws -> T {
        try await offCallerThread { try body(self) }
    }

    /// Sync until nothing is left either way, off the caller's thread (`syncNow()` blocks on the
    /// network). Connect first: `connect(serverUrl:token:project:)`, or `connectWith(transport:project:)`
    /// for an app-provided `AppTransport` (`URLSessionTransport` below). The report says what each
    /// unconfirmed local edit became (`reconciliation`). Throws `FieldSyncError.Offline` (edits are
    /// kept and go out next time) or `.NotAuthorized` (sign in again, then `connect` with the new
    /// token). Observers, `syncStatusUpdates()` among them, hear of every round. Cancelling the
    /// task stops the sync before its next round and throws `CancellationError`; every round
    /// answered before is kept, and the next sync goes on from there.
    @discardableResult
    public func sync() async throws -> SyncReport {
        try await stoppable { try self.syncNowCancellable(cancellation: $0) }
    }

    /// Fetch the full size of another device's photo (by its id or SHA-256) off the caller's
    /// thread; returns its file. `onProgress` hears the bytes here and the photo's size after each
    /// chunk, on the fetching thread. A fetch cut off goes on from where it stopped; a photo
    /// already here is not fetched again. Throws `FieldSyncError.Offline` (try again later) or
    /// `.InvalidInput` (no such photo, one kept by URI, or not connected over the built-in transport).
    /// Cancelling the task stops the fetch before its next chunk and throws `CancellationError`;
    /// the chunks fetched are kept, and the next fetch goes on from there.
    public func fetchPhoto(
        _ photo: String, onProgress: @escaping @Sendable (_ received: UInt64, _ size: UInt64) -> Void = { _, _ in }
    ) async throws -> URL {
        let relay = FetchProgressRelay(onProgress)
        return try await stoppable {
            URL(fileURLWithPath: try self.fetchPhotoCancellable(photo: photo, progress: relay, cancellation: $0))
        }
    }
}

// MARK: - An app transport over URLSession

/// Sync rounds and photo bytes through the app's own `URLSession` (its configuration, proxies,
/// certificate pinning): `let http = URLSessionTransport(server:token:)`, then
/// `replica.connectWith(transport: http, project:, photos: http)`. Rust calls it on its sync
/// thread and waits for the answer, so blocking here is right.
public final class URLSessionTransport: AppTransport, AppPhotoTransport, @unchecked Sendable {
    private let session: URLSession
    private let server: URL
    private let token: String

    /// `server` as for `connect`, e.g. `https://sync.example.com`.
    public init(server: URL, token: String, session: URLSession = .shared) {
        self.session = session
        self.server = server
        self.token = token
    }

    public func roundTrip(request: Data) throws -> Data {
        var post = URLRequest(url: server.appendingPathComponent("v1/sync"), timeoutInterval: 30)
        post.httpMethod = "POST"
        post.setValue(syncContentType(), forHTTPHeaderField: "Content-Type")
        post.httpBody = request
        return try send(post).body
    }

    /// `path` comes from the library (project and photo percent-encoded, with its query).
    public func putPhotoChunk(path: String, chunk: Data) throws -> Data {
        var put = URLRequest(url: try url(path), timeoutInterval: 30)
        put.httpMethod = "PUT"
        put.setValue("application/octet-stream", forHTTPHeaderField: "Content-Type")
        put.httpBody = chunk
        return try send(put).body
    }

    public func getPhotoChunk(path: String) throws -> PhotoChunkAnswer {
        let (body, response) = try send(URLRequest(url: try url(path), timeoutInterval: 30))
        guard let size = response?.value(forHTTPHeaderField: "x-photo-size").flatMap(UInt64.init) else {
            throw TransportError.Unreachable(detail: "the answer lacks x-photo-size")
        }
        return PhotoChunkAnswer(bytes: body, photoSize: size)
    }

    private func url(_ path: String) throws -> URL {
        let base = server.absoluteString.hasSuffix("/") ? String(server.absoluteString.dropLast()) : server.absoluteString
        guard let url = URL(string: base + path) else { throw TransportError.Unreachable(detail: "bad path \(path)") }
        return url
    }

    /// One request with the token; the body of a 200, or the error the library expects.
    private func send(_ request: URLRequest) throws -> (body: Data, response: HTTPURLResponse?) {
        var request = request
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        let done = DispatchSemaphore(value: 0)
        let answer = Answer()
        session.dataTask(with: request) { data, response, error in
            let http = response as? HTTPURLResponse
            if let error {
                answer.result = .failure(.Unreachable(detail: error.localizedDescription))
            } else if let http, http.statusCode != 200 {
                answer.result = .failure(.Server(status: UInt16(clamping: http.statusCode), body: data ?? Data()))
            } else {
                answer.result = .success((data ?? Data(), http))
            }
            done.signal()
        }.resume()
        done.wait() // the semaphore orders the write above before this read
        return try answer.result.get()
    }

    private final class Answer: @unchecked Sendable {
        var result: Result<(Data, HTTPURLResponse?), TransportError> = .failure(.Unreachable(detail: "no answer"))
    }
}

/// The live channel on the app's own `URLSession` (for `connectWith`): a WebSocket to
/// `liveUrl(serverUrl:project:)` that tells the replica (`serverChanged()`) when it opens and on
/// each message, so background sync runs a round at once. Reconnects with backoff after a failure;
/// `close()` (or releasing it) ends it.
public final class URLSessionLiveChannel: @unchecked Sendable {
    private let request: URLRequest
    private let session: URLSession
    private weak var replica: Replica?
    private var task: URLSessionWebSocketTask?
    private var closed = false
    private var backoff: TimeInterval = 1
    private let lock = NSLock()

    public init(server: URL, token: String, project: String, replica: Replica, session: URLSession = .shared) throws {
        var request = URLRequest(url: URL(string: try liveUrl(serverUrl: server.absoluteString, project: project))!)
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        self.request = request
        self.session = session
        self.replica = replica
        open()
    }

    private func open() {
        lock.lock(); defer { lock.unlock() }
        guard !closed else { return }
        let task = session.webSocketTask(with: request)
        self.task = task
        task.resume()
        replica?.serverChanged() // something may have happened while it was closed
        receive(on: task)
    }

    private func receive(on task: URLSessionWebSocketTask) {
        task.receive { [weak self] result in
            guard let self else { return }
            switch result {
            case .success:
                self.backoff = 1
                self.replica?.serverChanged()
                self.receive(on: task)
            case .failure:
                let delay = self.backoff
                self.backoff = min(self.backoff * 2, 300)
                DispatchQueue.global().asyncAfter(deadline: .now() + delay) { [weak self] in self?.open() }
            }
        }
    }

    public func close() {
        lock.lock(); defer { lock.unlock() }
        closed = true
        task?.cancel(with: .normalClosure, reason: nil)
    }

    deinit { task?.cancel(with: .normalClosure, reason: nil) }
}

/// Open (or create) a replica off the caller's thread (opening may upgrade the database's schema).
/// `encryptionKey`: 32 random bytes kept in the Keychain, to encrypt the store at rest (needs the
/// XCFramework built with `ENCRYPTION=1 ./build-xcframework.sh`).
public func openReplica(path: String, device: String, encryptionKey: Data? = nil) async throws -> Replica {
    try await offCallerThread { try Replica.open(path: path, device: device, encryptionKey: encryptionKey) }
}

// MARK: - Errors

extension FieldSyncError {
    /// The words to show the person using the app (the rule's reason, or what to do next).
    public var text: String {
        switch self {
        case .RefusedByRule(_, let reason):
            return reason
        case .NotAuthorized(let detail), .Offline(let detail), .UpdateRequired(let detail), .Rejected(let detail),
             .Storage(let detail), .InvalidInput(let detail), .NotFound(let detail):
            return detail
        }
    }
}
