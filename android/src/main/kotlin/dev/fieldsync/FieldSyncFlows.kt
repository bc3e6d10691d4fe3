// Kotlin idioms over the generated bindings (`fieldsync.kt`, generated at build
// time from the Rust library): Flows for the observers, suspend forms for calls
// that block, and the technician-facing text of an error. Nothing here passes a
// call through unchanged; everything else is the generated API itself.
package dev.fieldsync

import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.ensureActive
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.callbackFlow
import kotlinx.coroutines.flow.conflate
import kotlinx.coroutines.flow.distinctUntilChanged
import kotlinx.coroutines.flow.flowOn
import kotlinx.coroutines.flow.map
import kotlinx.coroutines.flow.mapNotNull
import kotlinx.coroutines.launch
import kotlinx.coroutines.suspendCancellableCoroutine
import kotlinx.coroutines.withContext
import java.io.File

/**
 * The validated view of [section]: the current one first, then every change
 * (local writes and merges). Collecting registers an observer; cancelling the
 * collection cancels it. Intermediate views may be skipped if the collector is
 * slow (the flow is conflated, like a `StateFlow`). Throws
 * [FieldSyncException.NotFound] if there is no such section.
 */
fun Replica.sectionFlow(section: String): Flow<SectionView> = callbackFlow {
    val handle = observeSection(section, object : SectionObserver {
        override fun onUpdate(view: SectionView) {
            trySend(view)
        }
    })
    awaitClose { handle.close() }
}.conflate().flowOn(Dispatchers.IO)

/** The conflict records of [section] (of every section when `null`): the current ones first, then every change. */
fun Replica.conflictsFlow(section: String? = null): Flow<List<ConflictRecord>> = callbackFlow {
    val handle = observeConflicts(section, object : ConflictsObserver {
        override fun onUpdate(conflicts: List<ConflictRecord>) {
            trySend(conflicts)
        }
    })
    awaitClose { handle.close() }
}.conflate().flowOn(Dispatchers.IO)

/**
 * The sync status: the current one first, then every change: each local write, each step of a
 * sync (by [sync] or background sync: connecting, each round's progress, done or failed), each
 * connectivity hint. [SyncStatus.activity] is what to show; [SyncStatus.lastProblem] what to act
 * on ([SyncProblem.NOT_AUTHORIZED] means sign in again).
 */
fun Replica.syncStatusFlow(): Flow<SyncStatus> = callbackFlow {
    val handle = observeSyncStatus(object : SyncStatusObserver {
        override fun onUpdate(status: SyncStatus) {
            trySend(status)
        }
    })
    awaitClose { handle.close() }
}.conflate().flowOn(Dispatchers.IO)

/**
 * A live section list: the page [query] selects (filtered by project, state, conflicts, unsynced
 * edits or area; ordered by id or last change), first as it is, then after every change to its
 * rows: local writes, and other devices' edits as each sync round merges them. Each row says
 * whether the section has unsynced edits ([SectionRow.unsynced]) and how many conflicts it has.
 * Conflated: a slow collector gets the latest page.
 *
 *     replica.sectionsFlow(SectionQuery(project = id, withUnsyncedEdits = true))
 */
fun Replica.sectionsFlow(query: SectionQuery = SectionQuery()): Flow<SectionPage> = callbackFlow {
    val handle = observeSections(query, object : SectionListObserver {
        override fun onUpdate(page: SectionPage) {
            trySend(page)
        }
    })
    awaitClose { handle.close() }
}.conflate().flowOn(Dispatchers.IO)

/**
 * What sync is doing, for the sync indicator: [SyncActivity.Offline], [SyncActivity.Connecting],
 * [SyncActivity.Syncing] (with the progress of the sync so far), [SyncActivity.UpToDate],
 * [SyncActivity.Waiting] (edits wait for the next sync), [SyncActivity.NeedsAttention] (with the
 * problem: sign in again, update the app). The current activity first, then each change.
 */
fun Replica.syncActivityFlow(): Flow<SyncActivity> = syncStatusFlow().map { it.activity }.distinctUntilChanged()

/**
 * The photos of [section], each with where its bytes are ([PhotoState]: on this device only,
 * uploading with the bytes sent, on the server, thumbnail only, downloading, available): the
 * current list first, then whenever a photo is added or arrives, or its bytes move (each chunk
 * a sync sends or fetches, each chunk [fetchPhoto] fetches). Conflated. Photos travel
 * over the built-in transport only (`connect`, [connectWithCredentials]), not `connectWith`.
 */
fun Replica.photoStatesFlow(section: String): Flow<List<PhotoStatus>> = callbackFlow {
    val handle = observePhotos(section, object : PhotosObserver {
        override fun onUpdate(photos: List<PhotoStatus>) {
            trySend(photos)
        }
    })
    awaitClose { handle.close() }
}.conflate().flowOn(Dispatchers.IO)

/** The state of one photo of [section] (by its id), for a photo's own screen; nothing while it is not in the section. */
fun Replica.photoStateFlow(section: String, photo: String): Flow<PhotoState> =
    photoStatesFlow(section).mapNotNull { photos -> photos.find { it.photo.id == photo }?.state }.distinctUntilChanged()

/**
 * Fetch the full size of another device's photo (by its id or SHA-256) off the main thread;
 * returns its file. [onProgress] hears the bytes here and the photo's size after each chunk, on
 * the fetching thread. A fetch cut off goes on from where it stopped; a photo already here is not
 * fetched again. Throws [FieldSyncException.Offline] (try again later),
 * [FieldSyncException.InvalidInput] (no such photo, one kept by URI, or not connected over the
 * built-in transport). Cancelling the coroutine stops the fetch before its next chunk; the chunks
 * fetched are kept.
 */
suspend fun Replica.fetchPhoto(photo: String, onProgress: (received: ULong, size: ULong) -> Unit = { _, _ -> }): File =
    stoppable { cancellation ->
        File(fetchPhotoCancellable(photo, object : PhotoFetchProgress {
            override fun onProgress(received: ULong, size: ULong) = onProgress(received, size)
        }, cancellation))
    }

/** Uploaded of to upload, 0.0 to 1.0 (1.0 when there was nothing to send): for a progress bar. */
val SyncProgress.uploadFraction: Float
    get() = if (toUpload == 0uL) 1f else (uploaded.toDouble() / toUpload.toDouble()).coerceAtMost(1.0).toFloat()

/**
 * Changes and documents received of their total, 0.0 to 1.0, for a download bar; null while the
 * server has not said how much it holds (an indeterminate bar then).
 */
val SyncProgress.downloadFraction: Float?
    get() {
        val total = (changesToDownload ?: return null) + (documentsToDownload ?: return null)
        val received = downloadedChanges + downloadedDocuments
        return if (total == 0uL) 1f else (received.toDouble() / total.toDouble()).coerceAtMost(1.0).toFloat()
    }

/**
 * Run [block] on this replica off the main thread. Every replica call touches
 * the disk and writes return only once durable, so from a coroutine:
 * `replica.io { recordProgress(id, 40) }`.
 */
suspend fun <T> Replica.io(block: Replica.() -> T): T = withContext(Dispatchers.IO) { block() }

/**
 * Open (or create) a replica off the main thread (opening may upgrade the database's schema).
 * [encryptionKey]: 32 random bytes kept with the Android Keystore, to encrypt the store at rest
 * (needs the library built with `-Pfieldsync.encryption=true`).
 */
suspend fun openReplica(path: String, device: String, encryptionKey: ByteArray? = null): Replica =
    withContext(Dispatchers.IO) { Replica.open(path, device, encryptionKey) }

/**
 * Sync until nothing is left either way, off the main thread (`syncNow()` blocks on the network).
 * Connect first: `connect(serverUrl, token, project)`, [connectWithCredentials] to have expired
 * tokens renewed, or `connectWith(transport, project)` for an app-provided [AppTransport]. The report says what each unconfirmed local edit became
 * ([SyncReport.reconciliation]). Throws [FieldSyncException.Offline] (edits are kept and go out next
 * time) or [FieldSyncException.NotAuthorized] (sign in again, then `connect` with the new token).
 * Observers, [syncStatusFlow] among them, hear of every round. Cancelling the coroutine stops the
 * sync before its next round (this then throws [CancellationException]); every round answered
 * before is kept, and the next sync goes on from there.
 */
suspend fun Replica.sync(): SyncReport = stoppable { syncNowCancellable(it) }

/**
 * Run the blocking [block] on the IO dispatcher with a [Cancellation] made before it starts; if
 * the coroutine is cancelled meanwhile, the cancellation is cancelled at once, so the sync or
 * fetch in flight stops at its next round or chunk (or sends nothing, if it had not begun), and
 * this throws [CancellationException] once it has (what was answered before is kept).
 */
private suspend fun <T> Replica.stoppable(block: Replica.(Cancellation) -> T): T = coroutineScope {
    val cancellation = Cancellation()
    // The engine hears of the cancel on the thread that cancels, before the round on the wire is
    // answered; a catch around `await` would run only once this coroutine's dispatcher gets to
    // it, by when the next round may have started. Set up before the work, so no cancel misses it.
    val stopOnCancel = launch(start = CoroutineStart.UNDISPATCHED) {
        suspendCancellableCoroutine<Unit> { it.invokeOnCancellation { cancellation.cancel() } }
    }
    val work = async(Dispatchers.IO) {
        try {
            block(cancellation)
        } catch (e: FieldSyncException) {
            ensureActive() // stopped by the cancel (`Offline`, "cancelled"): end cancelled, not failed
            throw e
        }
    }
    try {
        work.await()
    } finally {
        stopOnCancel.cancel() // the work is over: cancelling its cancellation is harmless
    }
}

/**
 * `connectWithCredentials` with the connector as a closure that returns a fresh token for this
 * device from the app's backend (which asks the server: `fieldsync admin issue-token`). It is
 * called on a sync's thread, at most once per sync, when the server refuses the token (expired,
 * replaced, none yet); throw [CredentialsException.Unavailable] when the backend cannot be reached
 * (sync goes on later), [CredentialsException.Refused] when the person must sign in again:
 * `replica.connectWithCredentials(url, "p1") { backend.deviceToken() }`.
 */
fun Replica.connectWithCredentials(serverUrl: String, project: String, fetch: () -> String) =
    connectWithCredentials(serverUrl, object : CredentialsConnector {
        override fun fetchCredentials(): String = fetch()
    }, project)

/** The words to show the person using the app (the rule's reason, or what to do next). */
val FieldSyncException.text: String
    get() = when (this) {
        is FieldSyncException.RefusedByRule -> reason
        is FieldSyncException.NotAuthorized -> detail
        is FieldSyncException.Offline -> detail
        is FieldSyncException.UpdateRequired -> detail
        is FieldSyncException.Rejected -> detail
        is FieldSyncException.Storage -> detail
        is FieldSyncException.InvalidInput -> detail
        is FieldSyncException.NotFound -> detail
    }
