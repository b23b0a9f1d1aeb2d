print("balloond")
