print("guts-bench")
