import GutsWire
