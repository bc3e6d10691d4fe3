// Partial sync through a real `fieldsync serve` (TestServer in SyncTest.kt):
// the office plans sections near a crew's corridor and far from it and
// assigns one far section to the crew; the technician's phone subscribes to
// the corridor and to the crew's assignments, and holds exactly those, each
// for the subscription that covers it; a route moved into the corridor brings
// its section whole; a scope over the limits is refused. Routes as in
// server/tests/integration/scope.rs. No sleeps: every step is a sync, counted.
package dev.fieldsync

import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout

/** A line due east along [lat] from [from] to [to] degrees of longitude. */
private fun line(lat: Double, from: Double, to: Double) = listOf(GeoPoint(lat, from), GeoPoint(lat, to))

/** The crew's corridor: due east along 48° N from 10.99° to 11.05° E, 500 m either side. */
private val CORRIDOR = Subscription.Corridor(line(48.0, 10.99, 11.05), 500u)

/** What [device] holds of [PROJECT]: each section id with its reasons, by id. */
private fun held(device: Replica): Map<String, List<HeldBecause>> =
    device.holdings(PROJECT).associate { it.section to it.reasons }.toSortedMap()

fun registerScopeTests() {
    test("scope: a technician's phone holds its corridor and its crew's sections, and what moves into them") {
        TestServer().use { server ->
            val olga = server.device("olga")
            val tina = server.device("tina")
            runBlocking {
                withTimeout(60_000) {
                    olga.sync() // the roster: olga is office
                    val near = (0 until 3).map { i ->
                        olga.io { createSection(PROJECT, "near-$i", line(48.002, 11.0 + 0.01 * i, 11.005 + 0.01 * i)) }
                    }
                    val far = (0 until 3).map { i ->
                        olga.io { createSection(PROJECT, "far-$i", line(49.0 + i, 12.0, 12.01)) }
                    }
                    olga.io { assignCrew(far[0], "north") }
                    assertEq("north", olga.section(far[0]).crew, "far-0's crew at the office")
                    assertEq(null, olga.section(far[1]).crew, "far-1's crew at the office")
                    olga.sync()
                    assertEq(Scope.Everything, olga.scope(PROJECT), "the office's scope")
                    check(held(olga).values.all { it == listOf(HeldBecause.Everything) }) { "olga's holdings ${held(olga)}" }
                    assertEq(6, held(olga).size, "sections the office holds")

                    // The phone subscribes through the API; each call returns the scope so far.
                    assertEq(Scope.Everything, tina.scope(PROJECT), "tina's scope before subscribing")
                    assertEq(Scope.Only(listOf(CORRIDOR)), tina.io { subscribe(PROJECT, CORRIDOR) }, "after the corridor")
                    val crew = Subscription.Crew("north")
                    val both = Scope.Only(listOf(CORRIDOR, crew))
                    assertEq(both, tina.io { subscribe(PROJECT, crew) }, "after the crew")
                    assertEq(both, tina.io { subscribe(PROJECT, crew) }, "subscribing twice adds nothing")
                    assertEq(both, tina.scope(PROJECT), "tina's scope")

                    val first = tina.sync()
                    assertEq(4uL, first.documents, "documents: three in the corridor, one assigned to the crew")
                    val expected = (near.map { it to listOf(HeldBecause.Subscription(0u)) } +
                        (far[0] to listOf(HeldBecause.Subscription(1u)))).toMap().toSortedMap()
                    assertEq<Map<String, List<HeldBecause>>>(expected, held(tina), "tina's holdings")
                    assertEq(4, tina.listSections(PROJECT).size, "sections listed at tina")
                    assertEq("north", tina.section(far[0]).crew, "far-0's crew at tina")
                    assertThrows<FieldSyncException.NotFound> { tina.section(far[1]) }

                    // The office moves far-1's route into the corridor: it arrives whole.
                    olga.io { setRoute(far[1], line(47.999, 11.02, 11.03)) }
                    olga.io { recordProgress(far[1], 5) }
                    olga.sync()
                    val moved = tina.sync()
                    assertEq(1uL, moved.documents, "documents: far-1 entered whole")
                    assertEq(listOf(HeldBecause.Subscription(0u)), held(tina)[far[1]], "why tina holds far-1")
                    assertEq(5, held(tina).size, "sections tina holds")
                    assertEq(olga.section(far[1]), tina.section(far[1]), "far-1 at tina, with its progress")

                    // A scope over the limits is refused, and changes nothing.
                    val wide = Subscription.Corridor(line(48.0, 10.99, 11.05), 9_000_000u)
                    val refused = assertThrows<FieldSyncException.InvalidInput> {
                        tina.setScope(PROJECT, Scope.Only(listOf(wide)))
                    }
                    check("50000 m" in refused.detail) { "the reason: ${refused.detail}" }
                    assertThrows<FieldSyncException.InvalidInput> { tina.subscribe(PROJECT, wide) }
                    assertEq(both, tina.scope(PROJECT), "tina's scope after the refusals")
                    assertEq(0uL, tina.sync().documents, "documents after the refusals")
                    assertEq(5, held(tina).size, "sections tina holds after the refusals")
                }
            }
            olga.close()
            tina.close()
        }
    }
}
