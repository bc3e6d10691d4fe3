// A tiny test runner for a plain JVM (no JUnit, no Gradle): tests register
// with `test(name) { … }`, `runTests()` runs them in order, prints one line per
// test and the closing `N passed, N failed` line, and the process exits
// non-zero if any failed.
package dev.fieldsync

import kotlin.system.exitProcess

private val tests = mutableListOf<Pair<String, () -> Unit>>()

fun test(name: String, body: () -> Unit) {
    tests += name to body
}

class AssertionFailed(message: String) : AssertionError(message)

fun check(condition: Boolean, message: () -> String) {
    if (!condition) throw AssertionFailed(message())
}

fun <T> assertEq(expected: T, actual: T, what: String = "value") {
    if (expected != actual) throw AssertionFailed("$what: expected <$expected>, got <$actual>")
}

/** Run [body], expecting it to throw a [T]; returns the exception. */
inline fun <reified T : Throwable> assertThrows(body: () -> Unit): T {
    try {
        body()
    } catch (e: Throwable) {
        if (e is T) return e
        throw AssertionFailed("expected ${T::class.simpleName}, got $e")
    }
    throw AssertionFailed("expected ${T::class.simpleName}, nothing was thrown")
}

fun runTests(filter: String?): Nothing {
    var passed = 0
    var failed = 0
    for ((name, body) in tests) {
        if (filter != null && !name.contains(filter)) continue
        val start = System.nanoTime()
        try {
            body()
            passed++
            println("ok   $name (${(System.nanoTime() - start) / 1_000_000} ms)")
        } catch (e: Throwable) {
            failed++
            println("FAIL $name: $e")
            e.printStackTrace(System.out)
        }
    }
    println("$passed passed, $failed failed")
    System.out.flush()
    exitProcess(if (failed == 0 && passed > 0) 0 else 1)
}
