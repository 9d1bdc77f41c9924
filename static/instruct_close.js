// The instruction box's Enter: the run starts (demo.py), the box closes and the editor has the keyboard.
() => { window.sharpenInstruct?.close(); }
