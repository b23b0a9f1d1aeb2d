print("balloonctl")
