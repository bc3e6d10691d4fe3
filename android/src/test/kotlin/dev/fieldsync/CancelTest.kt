// Cancelling the coroutine of `sync()` in the middle of a multi-round sync,
// through a real `fieldsync serve` (TestServer in SyncTest.kt). The cancel comes
// from inside a round trip, so the test counts rounds and never waits on a clock.
package dev.fieldsync

import java.io.File
import java.util.concurrent.atomic.AtomicInteger
import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.CompletableDeferred
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.Job
import kotlinx.coroutines.cancel
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking

/** [JavaHttpTransport] that counts the round trips it starts and calls [onRound] with each one's number first. */
class RoundCountingTransport(server: String, token: String) : AppTransport {
    private val http = JavaHttpTransport(server, token)
    private val started = AtomicInteger()

    /** Round trips started so far. */
    val rounds: Int get() = started.get()

    /** Called on the sync's thread inside each round trip, before its request goes out. */
    @Volatile var onRound: (round: Int) -> Unit = {}

    override fun roundTrip(request: ByteArray): ByteArray {
        onRound(started.incrementAndGet())
        return http.roundTrip(request)
    }
}

/** Olga's sections, each with 40 kB of incompressible notes: together several 1 MiB responses. */
private const val BULK_SECTIONS = 96

fun registerCancelTests() {
    test("cancel: a cancelled sync() stops before its next round, keeps what was answered; the next sync finishes the rest") {
        TestServer().use { server ->
            val olga = server.device("olga")
            val transport = RoundCountingTransport(server.url, server.enroll("fred").token)
            val fred = Replica.open(File(tempDir(), "fred.db").path, "fred-phone")
            fred.connectWith(transport, PROJECT)
            runBlocking {
                olga.sync()
                val site = olga.io { createSection(PROJECT, "Hauptstraße north", ROUTE) }
                olga.sync()
                fred.sync() // the roster and the site: fred may edit it
                val random = java.util.Random(16)
                val bulk = olga.io {
                    List(BULK_SECTIONS) { i ->
                        createSection(PROJECT, "Bulk $i", ROUTE).also {
                            setNotes(it, String(CharArray(40_000) { 'a' + random.nextInt(26) }))
                        }
                    }
                }
                olga.sync()
                fred.io { recordProgress(site, 8) }
                fred.io { setNotes(site, "trench open") }
                assertEq(2L, fred.syncStatus().pendingChanges, "fred's edits before the sync")
                val roundsRecorded = fred.syncStatus().recentRounds.size

                // The screen's scope is cancelled while the sync's 2nd round trip is on the wire.
                // `sync()` tells the engine within `cancel()`, on the transport's thread, so no
                // 3rd round may start, whatever the dispatcher is doing.
                val screen = CoroutineScope(Job() + Dispatchers.Default)
                val first = transport.rounds + 1
                transport.onRound = { round -> if (round == first + 1) screen.cancel("the screen was closed") }
                val ended = CompletableDeferred<Result<SyncReport>>()
                screen.launch { ended.complete(runCatching { fred.sync() }) }.join()
                transport.onRound = {}

                val outcome = ended.await()
                check(outcome.exceptionOrNull() is CancellationException) { "sync() ended with $outcome" }
                assertEq(2, transport.rounds - first + 1, "round trips of the cancelled sync")

                // What was answered is kept: fred's edits (confirmed by the first answer), the
                // sections of both answers, and both rounds in the status.
                assertEq(0L, fred.syncStatus().pendingChanges, "fred's edits after the cancel")
                assertEq(roundsRecorded + 2, fred.syncStatus().recentRounds.size, "rounds recorded")
                val received = bulk.filter { id -> runCatching { fred.section(id) }.getOrNull() == olga.section(id) }
                check(received.isNotEmpty() && received.size < bulk.size) {
                    "bulk sections at fred as at olga after the cancel: ${received.size} of ${bulk.size}"
                }

                // The next sync goes on from there: the rest arrives, nothing of fred's goes again.
                val atCancel = transport.rounds
                val rest = fred.sync()
                assertEq(0uL, rest.confirmed, "fred's edits confirmed again")
                println("cancel: 2 rounds, ${received.size} of ${bulk.size} sections kept; the next sync: ${rest.rounds} rounds")
                check(rest.rounds >= 1u && transport.rounds - atCancel == rest.rounds.toInt()) { "the rest: $rest" }
                check(rest.sectionsChanged.none { it in received }) { "sections changed again: ${rest.sectionsChanged}" }
                for (id in bulk) assertEq(olga.section(id), fred.section(id), "bulk section $id at fred")
                assertEq(0L, fred.syncStatus().pendingChanges, "fred's pending changes")
                converge(site, olga, fred)
                assertEq(8, olga.section(site).progress.toInt(), "fred's progress at olga")
                assertEq("trench open", olga.section(site).notes, "fred's notes at olga")
            }
            olga.close()
            fred.close()
        }
    }
}
