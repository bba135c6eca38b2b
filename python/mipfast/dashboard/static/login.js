"use strict";
document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const error = document.getElementById("error");
  const button = form.querySelector("button");
  button.disabled = true;
  error.textContent = "";
  try {
    const r = await fetch("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: form.username.value, password: form.password.value }),
    });
    if (r.ok) {
      location.href = "/";
      return;
    }
    error.textContent = (await r.json()).error || `login failed (${r.status})`;
  } catch (e) {
    error.textContent = `cannot reach the device: ${e}`;
  } finally {
    button.disabled = false;
  }
});
