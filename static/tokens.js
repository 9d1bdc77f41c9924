// Clicking a token of the denoising view reports its canvas position to the token inspector.
element.addEventListener('click', (event) => {
  const token = event.target.closest('.tok');
  if (!token) return;
  element.querySelectorAll('.tok.picked').forEach((t) => t.classList.remove('picked'));
  token.classList.add('picked');
  trigger('select', {index: Number(token.dataset.pos), value: token.textContent});
});
