// Ctrl/Cmd+K in the document opens the instruction box over the selection; Esc closes it and gives
// the editor the keyboard back; Enter (the textbox's submit, wired in demo.py) runs and closes it.
() => {
  if (window.sharpenInstruct) return;
  const box = () => document.getElementById('instruct-box');
  const view = () => document.querySelector('#document .sh-editor')?.cmView;
  const close = () => { box()?.classList.remove('open'); view()?.focus(); };
  const open = () => {
    const b = box(), v = view();
    if (!b || !v) return;
    const at = v.coordsAtPos(v.state.selection.main.from) || v.dom.getBoundingClientRect();
    b.classList.add('open');
    const height = b.getBoundingClientRect().height;
    const top = at.top - height - 6 >= 8 ? at.top - height - 6 : (at.bottom || at.top) + 6;
    b.style.top = `${Math.round(top)}px`;
    b.style.left = `${Math.round(Math.max(8, Math.min(at.left, window.innerWidth - b.offsetWidth - 8)))}px`;
    const input = b.querySelector('textarea, input');
    input?.focus();
    input?.select();
  };
  window.addEventListener('keydown', (event) => {
    const inBox = event.target.closest?.('#instruct-box');
    if (event.key === 'Escape' && inBox) {
      event.preventDefault(); event.stopPropagation(); close();
    } else if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === 'k'
               && event.target.closest?.('#document')) {
      event.preventDefault(); event.stopPropagation(); open();
    }
  }, true);
  window.sharpenInstruct = {open, close};
}
