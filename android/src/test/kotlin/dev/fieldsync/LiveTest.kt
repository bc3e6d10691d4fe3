// Live section lists, change notifications and the sync activity, through a real
// `fieldsync serve` (TestServer in SyncTest.kt). Notifications are counted, never
// timed; every wait has a generous timeout only as a guard against a hang.
package dev.fieldsync

import java.util.Collections
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout

/** An observer that keeps every page it is told (no conflation: each one counts). */
class Pages : SectionListObserver {
    val values: MutableList<SectionPage> = Collections.synchronizedList(mutableListOf())
    override fun onUpdate(page: SectionPage) {
        values += page
    }
}

/** Each activity the status goes through (a status that changed elsewhere and kept its activity adds nothing). */
class Activities : SyncStatusObserver {
    val values: MutableList<SyncActivity> = Collections.synchronizedList(mutableListOf())
    override fun onUpdate(status: SyncStatus) {
        synchronized(values) { if (values.lastOrNull() != status.activity) values += status.activity }
    }
}

fun registerLiveTests() {
    test("live: a filtered list follows another device's edits as syncs bring them; unsynced rows are flagged") {
        TestServer().use { server ->
            val olga = server.device("olga")
            val tina = server.device("tina")
            runBlocking {
                withTimeout(60_000) {
                    olga.sync()
                    val a = olga.io { createSection(PROJECT, "A", ROUTE) }
                    val b = olga.io { createSection(PROJECT, "B", ROUTE) }
                    olga.sync()
                    tina.sync()

                    val surveyed = SectionQuery(project = PROJECT, states = listOf(ConstructionState.SURVEYED))
                    val pages = Pages()
                    val handle = tina.observeSections(surveyed, pages)
                    assertEq(listOf(0uL), pages.values.map { it.total }, "the first page: nothing surveyed")
                    olga.io { transition(a, ConstructionState.SURVEYED) }
                    olga.sync()
                    tina.sync() // another device's edit arrives: the list follows
                    assertEq(listOf(a), pages.values.last().rows.map { it.id }, "after olga's transition arrived")
                    assertEq(ConstructionState.SURVEYED, pages.values.last().rows.single().state, "row state")

                    // This device's own edit: the row is flagged unsynced until a sync confirms it.
                    val unsyncedOnly = SectionQuery(project = PROJECT, withUnsyncedEdits = true)
                    tina.io { setNotes(b, "tina was here") }
                    val unsynced = tina.sectionsFlow(unsyncedOnly).first()
                    assertEq(listOf(b), unsynced.rows.map { it.id }, "unsynced rows")
                    check(unsynced.rows.single().unsynced) { "flag ${unsynced.rows}" }
                    tina.sync()
                    assertEq(0uL, tina.sectionsFlow(unsyncedOnly).first().total, "after the sync")

                    // Last change first; the area filter over the route's bounding box.
                    val recent = tina.querySections(SectionQuery(project = PROJECT, order = SectionOrder.LAST_CHANGE))
                    assertEq(b, recent.rows.first().id, "the section changed last comes first")
                    val around = GeoBounds(south = 47.99, west = 10.99, north = 48.01, east = 11.02)
                    assertEq(2uL, tina.querySections(SectionQuery(area = around)).total, "in the area")
                    val elsewhere = GeoBounds(south = 50.0, west = 8.0, north = 51.0, east = 9.0)
                    assertEq(0uL, tina.querySections(SectionQuery(area = elsewhere)).total, "elsewhere")

                    // Background sync, woken by the live channel: the Flow follows with no sync() call here.
                    tina.startBackgroundSync(FAST)
                    olga.io { transition(b, ConstructionState.SURVEYED) }
                    olga.sync()
                    val both = tina.sectionsFlow(surveyed).first { it.total == 2uL }
                    assertEq(setOf(a, b), both.rows.map { it.id }.toSet(), "both surveyed at tina")
                    tina.io { stopBackgroundSync() }
                    handle.close()
                }
            }
            olga.close()
            tina.close()
        }
    }

    test("live: a merge tells only the observers of the sections it changed (counted)") {
        TestServer().use { server ->
            val olga = server.device("olga")
            val tina = server.device("tina")
            runBlocking {
                olga.sync()
                val ids = (1..3).map { i -> olga.io { createSection(PROJECT, "S$i", ROUTE) } }
                olga.sync()
                tina.sync()
                val views = ids.map { Recorder<SectionView>() }
                val handles = ids.zip(views).map { (id, rec) -> tina.observeSection(id, rec.section()) }
                val list = Pages()
                val listHandle = tina.observeSections(SectionQuery(project = PROJECT), list)
                olga.io { recordProgress(ids[1], 5) }
                olga.sync()
                tina.sync()
                assertEq(listOf(1, 2, 1), views.map { it.values.size }, "values per section observer")
                assertEq(5, views[1].values.last().progress.toInt(), "the changed section's new view")
                assertEq(2, list.values.size, "list pages: the first, then the merge")
                tina.sync() // nothing new: nobody is told
                assertEq(listOf(1, 2, 1), views.map { it.values.size }, "after an idle sync")
                handles.forEach { it.close() }
                listHandle.close()
            }
            olga.close()
            tina.close()
        }
    }

    test("sync activity: a large bootstrap shows its progress round by round, of its total; offline; needs attention") {
        TestServer().use { server ->
            val olga = server.device("olga")
            val random = java.util.Random(16)
            val sections = 64
            runBlocking {
                olga.sync()
                olga.io {
                    repeat(sections) { i ->
                        val id = createSection(PROJECT, "Bulk $i", ROUTE)
                        // Incompressible notes, so that the bootstrap takes more than one page.
                        setNotes(id, String(CharArray(40_000) { 'a' + random.nextInt(26) }))
                    }
                }
                val up = olga.sync()
                check(up.rounds >= 2u) { "olga's upload took ${up.rounds} rounds" }
            }
            val enrollment = server.enroll("fred")
            val fred = server.device("fred", enrollment.token)
            val activities = Activities()
            val handle = fred.observeSyncStatus(activities)
            val report = runBlocking { fred.sync() }
            check(report.rounds >= 2u && report.documents == sections.toULong()) { "bootstrap $report" }

            val seen = activities.values.toList()
            assertEq(SyncActivity.Waiting, seen.first(), "before the first sync")
            assertEq(SyncActivity.Connecting, seen[1], "then connecting")
            assertEq(SyncActivity.UpToDate, seen.last(), "at the end")
            val progress = seen.filterIsInstance<SyncActivity.Syncing>().map { it.progress }
            check(progress.size >= 2) { "progress seen: $progress" }
            check(progress.first().moreToDownload && progress.first().downloadedDocuments in 1uL until sections.toULong()) {
                "the first page: $progress"
            }
            check(progress.zipWithNext().all { (x, y) -> x.downloadedDocuments <= y.downloadedDocuments && x.downloadedBytes < y.downloadedBytes }) {
                "progress only grows: $progress"
            }
            assertEq(sections.toULong(), progress.last().downloadedDocuments, "every document")
            assertEq(1f, progress.last().uploadFraction, "nothing to upload")
            // "n of 64 sections" from the first answer on: the server counted what it still held.
            check(progress.all { it.documentsToDownload == sections.toULong() }) { "the total: $progress" }
            val fractions = progress.map { it.downloadFraction!! }
            check(fractions.first() < 1f && fractions.zipWithNext().all { (x, y) -> x <= y }) { "fractions: $fractions" }
            assertEq(1f, fractions.last(), "the download fraction at the end")
            check(fred.syncStatus().recentRounds.size >= 2) { "recent rounds" }

            fred.setConnectivity(false)
            assertEq(SyncActivity.Offline, runBlocking { fred.syncActivityFlow().first() }, "offline hint")
            fred.setConnectivity(true)
            server.revoke(enrollment.deviceId)
            assertThrows<FieldSyncException.NotAuthorized> { runBlocking { fred.sync() } }
            val attention = fred.syncStatus().activity
            check(attention is SyncActivity.NeedsAttention && attention.problem == SyncProblem.NOT_AUTHORIZED) {
                "activity $attention"
            }
            handle.close()
            olga.close()
            fred.close()
        }
    }
}
