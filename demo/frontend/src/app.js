fetch("/api/version").then((r) => r.json()).then((v) => console.log("backend", v.version));
