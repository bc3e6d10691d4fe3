// The Kotlin package's tests, on a plain JVM against the host-built library
// (scripts/test-kotlin.sh builds, generates the bindings, compiles and runs
// this). `java … dev.fieldsync.FieldSyncTestKt [name filter]`.
package dev.fieldsync

import java.io.File
import java.io.RandomAccessFile
import java.nio.file.Files
import java.util.Collections
import kotlinx.coroutines.CompletableDeferred
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.cancel
import kotlinx.coroutines.flow.collect
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout

const val PROJECT = "build-out"

/** A planned route due east, about 745 m long. */
val ROUTE = listOf(GeoPoint(48.0, 11.0), GeoPoint(48.0, 11.01))
val ON_ROUTE = GeoPoint(48.0, 11.005)
/** About 1.1 km north of the route: quarantined. */
val OFF_ROUTE = GeoPoint(48.01, 11.005)

fun tempDir(): File = Files.createTempDirectory("fieldsync-kotlin").toFile()

/** Three phones of one crew, each knowing the roster, and a section the office created and shared. */
class Crew(val dir: File = tempDir()) {
    val office = Replica.open(File(dir, "office.db").path, "office-1")
    val foreman = Replica.open(File(dir, "foreman.db").path, "foreman-1")
    val tech = Replica.open(File(dir, "tech.db").path, "tech-1")
    val all = listOf(office, foreman, tech)
    val section: String

    init {
        val roster = listOf(
            Member(office.actor(), "olga", Role.OFFICE),
            Member(foreman.actor(), "fred", Role.FOREMAN),
            Member(tech.actor(), "tina", Role.TECHNICIAN),
        )
        all.forEach { it.setRoster(PROJECT, roster) }
        section = office.createSection(PROJECT, "Hauptstraße north", ROUTE)
        share(office, foreman)
        share(office, tech)
    }

    /** Send everything `from` has of the section to `to`. */
    fun share(from: Replica, to: Replica): MergeReport = to.applyChanges(from.changesOf(section))

    fun close() = all.forEach { it.close() }
}

fun officeOnly(name: String = "office"): Pair<Replica, String> {
    val r = Replica.open(File(tempDir(), "$name.db").path, "$name-1")
    r.setRoster(PROJECT, listOf(Member(r.actor(), "olga", Role.OFFICE)))
    return r to r.createSection(PROJECT, "Ringstraße", ROUTE)
}

/** Observer that keeps every value it is told. */
class Recorder<T> {
    val values: MutableList<T> = Collections.synchronizedList(mutableListOf())
    fun section() = object : SectionObserver {
        override fun onUpdate(view: SectionView) {
            @Suppress("UNCHECKED_CAST")
            values += view as T
        }
    }
}

fun registerTests() {
    test("open a replica in a temp dir; device and actor") {
        val dir = tempDir()
        val r = Replica.open(File(dir, "a.db").path, "phone-a")
        assertEq("phone-a", r.device(), "device")
        check(r.actor().matches(Regex("[0-9a-f]{32}"))) { "actor ${r.actor()}" }
        val actor = r.actor()
        r.close()
        val again = Replica.open(File(dir, "a.db").path, "phone-a")
        assertEq(actor, again.actor(), "actor after reopening")
        again.close()
    }

    test("create a section and read its validated view") {
        val (r, id) = officeOnly()
        val v = r.section(id)
        assertEq("Ringstraße", v.name, "name")
        assertEq(PROJECT, v.project, "project")
        assertEq(ROUTE, v.route, "route")
        assertEq(ConstructionState.PLANNED, v.state, "state")
        assertEq(0, v.progress.toInt(), "progress")
        check(v.heads.isNotEmpty()) { "heads" }
        r.close()
    }

    test("edit: transitions, progress, location, notes, photos, name, route") {
        val (r, id) = officeOnly()
        assertEq(Decision.Accepted, r.transition(id, ConstructionState.SURVEYED).decision, "transition")
        val progress = r.recordProgress(id, 15)
        assertEq(id, progress.section, "receipt section")
        check(progress.editId.isNotEmpty() && progress.changeHash.length == 64) { "receipt $progress" }
        r.reportLocation(id, ON_ROUTE)
        r.setNotes(id, "trench along the north kerb")
        r.spliceNotes(id, 0u, 6u, "Trench")
        val photo = r.addPhoto(id, "content://photos/1", "manhole 3")
        r.renameSection(id, "Ringstraße west")
        val route = ROUTE + GeoPoint(48.001, 11.02)
        r.setRoute(id, route)
        r.transition(id, ConstructionState.BLOCKED, "water main")
        val v = r.section(id)
        assertEq(ConstructionState.BLOCKED, v.state, "state")
        assertEq(Blocked("water main", ConstructionState.SURVEYED), v.blocked, "blocked")
        assertEq(15, v.progress.toInt(), "progress")
        assertEq(ON_ROUTE, v.location?.point, "location")
        assertEq(1, v.asBuilt.size, "as-built points")
        assertEq("Trench along the north kerb", v.notes, "notes")
        assertEq(listOf(photo), v.photos.map { it.id }, "photos")
        assertEq("manhole 3", v.photos[0].caption, "caption")
        assertEq("Ringstraße west", v.name, "name")
        assertEq(route, v.route, "route")
        assertEq(
            listOf(DomainEventKind.SECTION_STARTED, DomainEventKind.SECTION_BLOCKED),
            v.events.map { it.kind },
            "events",
        )
        r.close()
    }

    test("list sections a page at a time") {
        val (r, first) = officeOnly()
        val ids = (listOf(first) + (1..4).map { r.createSection(PROJECT, "S$it", ROUTE) }).sorted()
        val pages = mutableListOf<List<SectionSummary>>()
        var after: String? = null
        while (true) {
            val page = r.listSections(PROJECT, after, 2u)
            if (page.isEmpty()) break
            pages += page
            after = page.last().id
        }
        assertEq(listOf(2, 2, 1), pages.map { it.size }, "page sizes")
        assertEq(ids, pages.flatten().map { it.id }, "ids in order")
        assertEq(ConstructionState.PLANNED, pages[0][0].state, "state")
        assertEq(0, r.listSections(project = "other").size, "other project")
        r.close()
    }

    test("RefusedByRule: out-of-range progress, with the rule and a reason; nothing stored") {
        val (r, id) = officeOnly()
        val before = r.history(id).size
        val e = assertThrows<FieldSyncException.RefusedByRule> { r.recordProgress(id, 150) }
        assertEq(Rule.PROGRESS_RANGE, e.rule, "rule")
        check(e.reason.isNotBlank() && e.text == e.reason) { "reason ${e.reason}" }
        assertEq(before, r.history(id).size, "history length")
        assertEq(0, r.section(id).progress.toInt(), "progress")
        r.close()
    }

    test("RefusedByRule: a technician may not skip states, nor create sections") {
        val crew = Crew()
        val skip = assertThrows<FieldSyncException.RefusedByRule> {
            crew.tech.transition(crew.section, ConstructionState.TRENCHED)
        }
        assertEq(Rule.TRANSITION_NOT_ALLOWED, skip.rule, "rule")
        val create = assertThrows<FieldSyncException.RefusedByRule> { crew.tech.createSection(PROJECT, "x", ROUTE) }
        assertEq(Rule.OFFICE_ONLY, create.rule, "rule")
        crew.close()
    }

    test("NotAuthorized: a device that is not in the project's roster") {
        val (office, id) = officeOnly()
        val stranger = Replica.open(File(tempDir(), "stranger.db").path, "stranger-1")
        stranger.applyChanges(office.changesOf(id))
        val e = assertThrows<FieldSyncException.NotAuthorized> { stranger.recordProgress(id, 5) }
        check(e.detail.isNotBlank()) { "detail" }
        office.close()
        stranger.close()
    }

    test("NotFound: an unknown section, for reads, writes and observers") {
        val (r, _) = officeOnly()
        assertThrows<FieldSyncException.NotFound> { r.section("nope") }
        assertThrows<FieldSyncException.NotFound> { r.recordProgress("nope", 5) }
        assertThrows<FieldSyncException.NotFound> { r.audit("nope") }
        assertThrows<FieldSyncException.NotFound> { r.observeSection("nope", Recorder<SectionView>().section()) }
        val e = assertThrows<FieldSyncException.NotFound> { runBlocking { r.sectionFlow("nope").first() } }
        check(e.text.contains("nope")) { e.text }
        r.close()
    }

    test("InvalidInput: bad point, notes range, unknown hash, bad change bytes, key, other device") {
        val (r, id) = officeOnly()
        assertThrows<FieldSyncException.InvalidInput> { r.reportLocation(id, GeoPoint(91.0, 0.0)) }
        assertThrows<FieldSyncException.InvalidInput> { r.spliceNotes(id, 10u, 0u, "x") }
        assertThrows<FieldSyncException.InvalidInput> { r.viewAt(id, PastPoint.Heads(listOf("zz"))) }
        assertThrows<FieldSyncException.InvalidInput> { r.viewAt(id, PastPoint.Time(0uL)) }
        assertThrows<FieldSyncException.InvalidInput> { r.addPhoto(id, " ") }
        assertThrows<FieldSyncException.InvalidInput> {
            r.applyChanges(listOf(SectionChange(id, byteArrayOf(1, 2, 3))))
        }
        val dir = tempDir()
        val key = assertThrows<FieldSyncException.InvalidInput> {
            Replica.open(File(dir, "k.db").path, "k", ByteArray(32))
        }
        check(key.detail.contains("encryption")) { key.detail }
        val short = assertThrows<FieldSyncException.InvalidInput> {
            Replica.open(File(dir, "k.db").path, "k", ByteArray(5))
        }
        check(short.detail.contains("32 bytes")) { short.detail }
        Replica.open(File(dir, "plain.db").path, "k").close()
        val noCipher = assertThrows<FieldSyncException.InvalidInput> {
            encryptStore(File(dir, "plain.db").path, ByteArray(32))
        }
        check(noCipher.detail.contains("no encryption at rest")) { noCipher.detail }
        Replica.open(File(dir, "d.db").path, "phone-a").close()
        assertThrows<FieldSyncException.InvalidInput> { Replica.open(File(dir, "d.db").path, "phone-b") }
        r.close()
    }

    test("Storage: a corrupt store is moved aside, an unreadable file left untouched; a newer schema needs an app update") {
        val dir = tempDir()
        val corrupt = File(dir, "corrupt.db")
        Replica.open(corrupt.path, "p").close()
        RandomAccessFile(corrupt, "rw").use { f -> f.write("field notebook!!".toByteArray()) } // its magic string
        val e = assertThrows<FieldSyncException.Storage> { Replica.open(corrupt.path, "p") }
        check(e.detail.contains("moved")) { e.detail }
        check(dir.listFiles()!!.any { it.name.startsWith("corrupt.corrupt-") }) { "moved-aside file" }
        Replica.open(corrupt.path, "p").close() // a fresh store now

        // No SQLite header at all: an encrypted store opened without its key looks like this.
        val noise = File(dir, "noise.db")
        noise.writeBytes(ByteArray(8192) { 0x5a })
        val u = assertThrows<FieldSyncException.Storage> { Replica.open(noise.path, "p") }
        check(u.detail.contains("open it with its key")) { u.detail }
        check(noise.readBytes().all { it == 0x5a.toByte() }) { "the unreadable file was changed" }

        val newer = File(dir, "newer.db")
        Replica.open(newer.path, "p").close()
        RandomAccessFile(newer, "rw").use { f ->
            f.seek(60) // SQLite header: user_version
            f.writeInt(99)
        }
        val bytes = newer.readBytes()
        val n = assertThrows<FieldSyncException.UpdateRequired> { Replica.open(newer.path, "p") }
        check(n.detail.contains("newer")) { n.detail }
        check(bytes.contentEquals(newer.readBytes())) { "the newer file was changed" }
    }

    test("audit and history") {
        val (r, id) = officeOnly()
        r.recordProgress(id, 5)
        val audit = r.audit(id)
        assertEq(listOf(Field.NAME, Field.ROUTE, Field.PROGRESS), audit.map { it.field }, "fields")
        check(audit.all { it.decision == Decision.Accepted && it.user == "olga" && it.role == Role.OFFICE }) {
            "audit $audit"
        }
        val history = r.history(id)
        assertEq(2, history.size, "changes")
        assertEq(listOf(history[0].hash), history[1].deps, "deps")
        r.close()
    }

    test("time travel by heads and by time") {
        val (r, id) = officeOnly()
        Thread.sleep(5) // stamps have millisecond resolution: keep each change in its own
        r.recordProgress(id, 5)
        val at5 = r.section(id).heads
        Thread.sleep(5)
        r.recordProgress(id, 8)
        assertEq(8, r.section(id).progress.toInt(), "now")
        assertEq(5, r.viewAt(id, PastPoint.Heads(at5)).progress.toInt(), "at heads")
        val times = r.history(id).map { it.timeMs }
        assertEq(5, r.viewAt(id, PastPoint.Time(times[1].toULong())).progress.toInt(), "at time")
        assertEq(0, r.viewAt(id, PastPoint.Time(times[0].toULong())).progress.toInt(), "at creation")
        r.close()
    }

    test("quarantined point accepted by the foreman") {
        val crew = Crew()
        val receipt = crew.tech.reportLocation(crew.section, OFF_ROUTE)
        check(receipt.decision is Decision.Quarantined) { "decision ${receipt.decision}" }
        crew.share(crew.tech, crew.foreman)
        val q = crew.foreman.section(crew.section).quarantined.single()
        assertEq(receipt.editId, q.editId, "quarantined edit")
        check(q.distanceM > 1000) { "distance ${q.distanceM}" }
        val techTries = assertThrows<FieldSyncException.RefusedByRule> { crew.tech.acceptPoint(crew.section, q.editId) }
        assertEq(Rule.ACCEPT_REQUIRES_FOREMAN, techTries.rule, "rule")
        crew.foreman.acceptPoint(crew.section, q.editId)
        val v = crew.foreman.section(crew.section)
        assertEq(OFF_ROUTE, v.location?.point, "location")
        check(v.quarantined.isEmpty()) { "still quarantined" }
        crew.close()
    }

    test("conflicts after merging two replicas; the same records and view on both") {
        val crew = Crew()
        val (tech, foreman) = crew.tech to crew.foreman
        tech.recordProgress(crew.section, 5) // both from the same base: a contest
        Thread.sleep(5) // the foreman's stamp is the later one, so the rule deciding is "max wins"
        foreman.recordProgress(crew.section, 8)
        val atTech = crew.share(foreman, tech)
        crew.share(tech, foreman)
        assertEq(8, tech.section(crew.section).progress.toInt(), "progress at the technician")
        assertEq(tech.section(crew.section), foreman.section(crew.section), "views")
        val conflicts = tech.conflicts(crew.section)
        assertEq(foreman.conflicts(crew.section), conflicts, "conflict records")
        val contest = conflicts.single { it.kind == ConflictKind.CONTEST }
        assertEq(Field.PROGRESS, contest.field, "field")
        assertEq(Rule.PROGRESS_MAX_WINS, contest.rule, "rule")
        assertEq(setOf("tina", "fred"), contest.candidates.map { it.user }.toSet(), "candidates")
        val mine = atTech.reconciliation.single { it.field == Field.PROGRESS }
        val outcome = mine.outcome
        check(outcome is EditOutcome.Overridden && outcome.rule == Rule.PROGRESS_MAX_WINS) { "outcome $outcome" }
        assertEq(listOf(crew.section), atTech.sectionsChanged, "sections changed")
        crew.close()
    }

    test("observer: current view first, then each change; cancel stops it; cancelling twice is harmless") {
        val (r, id) = officeOnly()
        val other = r.createSection(PROJECT, "other", ROUTE)
        val rec = Recorder<SectionView>()
        val handle = r.observeSection(id, rec.section())
        assertEq(listOf(0), rec.values.map { it.progress.toInt() }, "first value")
        r.recordProgress(id, 5)
        r.recordProgress(other, 7) // another section: nothing new here, nothing sent
        assertThrows<FieldSyncException.RefusedByRule> { r.recordProgress(id, 150) }
        r.setNotes(id, "hello")
        assertEq(listOf(0, 5, 5), rec.values.map { it.progress.toInt() }, "progress seen")
        assertEq("hello", rec.values.last().notes, "notes seen")
        handle.cancel()
        r.recordProgress(id, 9)
        handle.cancel()
        handle.close()
        assertEq(3, rec.values.size, "values after cancel")
        r.close()
    }

    test("observer: a throwing observer does not stop writes or the other observers") {
        val (r, id) = officeOnly()
        val thrower = r.observeSection(id, object : SectionObserver {
            override fun onUpdate(view: SectionView): Unit = throw IllegalStateException("observer bug")
        })
        val rec = Recorder<SectionView>()
        val h = r.observeSection(id, rec.section())
        r.recordProgress(id, 4)
        assertEq(listOf(0, 4), rec.values.map { it.progress.toInt() }, "seen")
        thrower.close()
        h.close()
        r.close()
    }

    test("observer: may read and write the replica from its callback") {
        val (r, id) = officeOnly()
        val other = r.createSection(PROJECT, "other", ROUTE)
        val otherNotes = Recorder<SectionView>()
        val h1 = r.observeSection(other, otherNotes.section())
        val h2 = r.observeSection(id, object : SectionObserver {
            override fun onUpdate(view: SectionView) {
                if (view.progress.toInt() == 6) r.setNotes(other, "mirrored ${r.section(id).progress}")
            }
        })
        r.recordProgress(id, 6)
        assertEq("mirrored 6", otherNotes.values.last().notes, "notes written from a callback")
        h1.close()
        h2.close()
        r.close()
    }

    test("Flow: the section's view, first as it is, then after a write; the collection's end cancels") {
        val (r, id) = officeOnly()
        r.recordProgress(id, 5)
        val seen = Collections.synchronizedList(mutableListOf<Int>())
        runBlocking {
            withTimeout(10_000) {
                val first = CompletableDeferred<Unit>()
                val job = launch(Dispatchers.Default) {
                    r.sectionFlow(id).collect {
                        seen += it.progress.toInt()
                        first.complete(Unit)
                        if (it.progress.toInt() == 8) cancel()
                    }
                }
                first.await()
                r.io { recordProgress(id, 8) }
                job.join()
            }
        }
        assertEq(listOf(5, 8), seen.toList(), "progress seen")
        runBlocking { r.io { recordProgress(id, 9) } } // no collector left: nothing to deliver to
        r.close()
    }

    test("Flow: conflicts appear when a merge brings a contest") {
        val crew = Crew()
        crew.tech.recordProgress(crew.section, 5)
        crew.foreman.recordProgress(crew.section, 8)
        val lists = runBlocking {
            withTimeout(10_000) {
                val seen = mutableListOf<Int>()
                val first = CompletableDeferred<Unit>()
                val job = launch(Dispatchers.Default) {
                    crew.tech.conflictsFlow(crew.section).collect {
                        seen += it.size
                        first.complete(Unit)
                        if (it.isNotEmpty()) cancel()
                    }
                }
                first.await()
                crew.tech.io { applyChanges(crew.foreman.changesOf(crew.section)) }
                job.join()
                seen
            }
        }
        assertEq(0, lists.first(), "first list")
        check(lists.last() > 0) { "conflicts seen $lists" }
        crew.close()
    }

    test("Flow: sync status counts pending local changes") {
        val (r, id) = officeOnly()
        val pending = runBlocking {
            withTimeout(10_000) {
                val before = r.syncStatusFlow().first()
                r.io { recordProgress(id, 3) }
                before.pendingChanges to r.syncStatusFlow().first().pendingChanges
            }
        }
        assertEq(pending.first + 1, pending.second, "pending changes")
        assertEq(null, r.syncStatus().lastSuccessMs, "never synced")
        r.close()
    }

    test("suspend open and io") {
        val dir = tempDir()
        val v = runBlocking {
            val r = openReplica(File(dir, "s.db").path, "s-1")
            r.io {
                setRoster(PROJECT, listOf(Member(actor(), "olga", Role.OFFICE)))
                section(createSection(PROJECT, "async", ROUTE)).also { close() }
            }
        }
        assertEq("async", v.name, "name")
    }

    test("round trip edit → view through the bindings (measured, printed)") {
        val (r, id) = officeOnly("bench")
        val n = 1000
        val warmup = 100
        val edit = LongArray(n)
        val read = LongArray(n)
        val both = LongArray(n)
        for (i in 0 until warmup + n) {
            val t0 = System.nanoTime()
            r.setNotes(id, "note $i")
            val t1 = System.nanoTime()
            val v = r.section(id)
            val t2 = System.nanoTime()
            assertEq("note $i", v.notes, "notes read back")
            if (i >= warmup) {
                edit[i - warmup] = t1 - t0
                read[i - warmup] = t2 - t1
                both[i - warmup] = t2 - t0
            }
        }
        fun LongArray.pct(p: Int): Double = sorted()[(size * p) / 100] / 1e6
        fun LongArray.line(): String = "p50 %.3f ms, p99 %.3f ms".format(pct(50), pct(99))
        println("BENCH edit→view round trip (setNotes + section, N=$n after $warmup warm-up): ${both.line()}; " +
            "the edit alone ${edit.line()}; the read alone ${read.line()}")
        r.close()
    }
}

fun main(args: Array<String>) {
    registerTests()
    registerSyncTests()
    registerCancelTests()
    registerLiveTests()
    registerCredentialsTests()
    registerPhotoTests()
    registerScopeTests()
    registerAppTransportTests()
    registerTlsTests()
    runTests(args.firstOrNull())
}
