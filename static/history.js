// Clicking a revision in the history tree picks it as B (with Shift: as A) for diff, restore and labels.
element.addEventListener('click', (event) => {
  const row = event.target.closest('li.rev');
  if (!row) return;
  trigger('select', {index: Number(row.dataset.rev), value: event.shiftKey ? 'A' : 'B'});
});
