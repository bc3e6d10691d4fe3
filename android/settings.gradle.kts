// Lets this module build on its own (`gradle -p android assembleRelease`).
// An app that includes it (README.md) uses its own settings instead and must
// apply the same plugins (with `apply false`) in its root build file.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
    plugins {
        id("com.android.library") version "8.7.3"
        id("org.jetbrains.kotlin.android") version "2.1.0"
    }
}

dependencyResolutionManagement {
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "fieldsync"
