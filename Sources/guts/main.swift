import GutsCLI

// The whole program lives in GutsCLI so tests can drive it; this file only hands over.
import Glibc
exit(GutsMain.run(arguments: Array(CommandLine.arguments.dropFirst())))
