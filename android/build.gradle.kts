// The FieldSync Android library module. It builds the Rust library per ABI
// with cargo-ndk into jniLibs and generates the Kotlin bindings at build time
// (never committed), then compiles them with src/main/kotlin.
//
// NOT RUN HERE: no Android SDK or NDK is reachable on the machine this was
// written on. The same bindings and src/main/kotlin are compiled and tested on
// a plain JVM by scripts/test-kotlin.sh. See README.md.
plugins {
    id("com.android.library")
    id("org.jetbrains.kotlin.android")
}

/** The Cargo workspace this module is a folder of. */
val workspace: File = projectDir.parentFile

/** ABIs to build; `-Pfieldsync.abis=arm64-v8a` for a quicker device-only build. */
val abis: List<String> = providers.gradleProperty("fieldsync.abis")
    .getOrElse("arm64-v8a,armeabi-v7a,x86_64").split(",").map { it.trim() }.filter { it.isNotEmpty() }

/** Cargo profile of the Android libraries (`mobile`: release with fat LTO; `dev` while debugging Rust). */
val rustProfile: String = providers.gradleProperty("fieldsync.rustProfile").getOrElse("mobile")

/** `-Pfieldsync.encryption=true`: SQLCipher encryption at rest, with OpenSSL built from source and linked in. */
val encryption: Boolean = providers.gradleProperty("fieldsync.encryption").map { it.toBoolean() }.getOrElse(false)

val jniLibsDir = layout.buildDirectory.dir("rust/jniLibs")
val bindingsDir = layout.buildDirectory.dir("generated/source/uniffi/kotlin")

android {
    namespace = "dev.fieldsync"
    compileSdk = 35
    ndkVersion = "27.2.12479018"

    defaultConfig {
        minSdk = 24
        consumerProguardFiles("consumer-rules.pro")
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    sourceSets {
        getByName("main") {
            java.srcDir("src/main/kotlin")
            java.srcDir(bindingsDir)
            jniLibs.srcDir(jniLibsDir)
        }
        // src/test holds the plain-JVM tests that scripts/test-kotlin.sh runs
        // (a main function and JNA on the host, not JUnit on Android).
        getByName("test") {
            java.setSrcDirs(emptyList<String>())
        }
    }
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    // The generated bindings call the Rust library through JNA.
    implementation("net.java.dev.jna:jna:5.13.0@aar")
    // FieldSyncFlows.kt: Flows and suspend functions.
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.9.0")
}

val rustSources = fileTree(workspace) {
    include("Cargo.toml", "Cargo.lock", "core/Cargo.toml", "core/src/**", "ffi/Cargo.toml", "ffi/uniffi.toml", "ffi/src/**")
}

/** libfieldsync_ffi.so for each ABI, into build/rust/jniLibs/<abi>/ (needs `cargo install cargo-ndk` and the NDK). */
val cargoNdk by tasks.registering(Exec::class) {
    description = "Builds the Rust library for each Android ABI with cargo-ndk."
    workingDir = workspace
    inputs.files(rustSources)
    outputs.dir(jniLibsDir)
    val command = mutableListOf("cargo", "ndk", "--platform", "24", "-o", jniLibsDir.get().asFile.path)
    abis.forEach { command += listOf("-t", it) }
    // The library alone: a workspace-wide build would unify uniffi's `cli` feature into it.
    command += listOf("build", "-p", "fieldsync-ffi", "--profile", rustProfile)
    if (encryption) command += listOf("--features", "encryption-vendored-openssl")
    commandLine(command)
}

/**
 * The Kotlin bindings, generated from a host build of the library: UniFFI
 * reads its metadata from the library's symbols, which cargo-ndk strips.
 */
val uniffiBindings by tasks.registering(Exec::class) {
    description = "Generates the Kotlin bindings (package dev.fieldsync) with the workspace's uniffi-bindgen."
    workingDir = workspace
    inputs.files(rustSources)
    outputs.dir(bindingsDir)
    val os = System.getProperty("os.name").lowercase()
    val hostLib = if ("mac" in os) "libfieldsync_ffi.dylib" else "libfieldsync_ffi.so"
    val out = bindingsDir.get().asFile.path
    commandLine(
        "sh", "-c",
        "cargo build -p fieldsync-ffi && cargo run -p uniffi-bindgen -- generate " +
            "--library target/debug/$hostLib --language kotlin --out-dir '$out'",
    )
}

tasks.named("preBuild") {
    dependsOn(cargoNdk, uniffiBindings)
}

/** The plain-JVM tests (what CI runs): `./gradlew :fieldsync:jvmTests`. */
tasks.register<Exec>("jvmTests") {
    description = "Runs scripts/test-kotlin.sh: the bindings and FieldSyncFlows.kt tested on the host JVM."
    workingDir = workspace
    commandLine("scripts/test-kotlin.sh")
}
