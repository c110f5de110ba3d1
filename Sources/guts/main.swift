import GutsCLI
import GutsSupport

// The whole program lives in GutsCLI so tests can drive it; this file only hands over.
import Glibc
MemoryTrace.configureAllocator()
exit(GutsMain.run(arguments: Array(CommandLine.arguments.dropFirst())))
