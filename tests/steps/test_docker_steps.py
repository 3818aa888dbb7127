"""The Docker steps (docs/design-notes.md#docker-steps) against the machine's real Docker engine:
builds FROM the locally built base image, pushes to throwaway registries on 127.0.0.1 (with and
without basic auth), and the failures a user meets (a broken Dockerfile, a wrong password, a
registry that is down, no engine at all)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from reconciler.prefect_rules.templating import apply_values
from reconciler.steps.docker import DEFAULT_BASE_IMAGE, build_tag, render_auto_dockerfile
from reconciler.steps.runner import StepFailed, registered_steps, run_steps
from tests.infra.docker_env import Registry, free_port
from tests.steps.conftest import Steps, load_steps

pytestmark = pytest.mark.docker


BUILD = "prefect_docker.deployments.steps.build_docker_image"
PUSH = "prefect_docker.deployments.steps.push_docker_image"
ENGINE_VARIABLES = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")


class Images:
    """Unique image names for one test; every tag of them is removed from the engine after."""

    def __init__(self) -> None:
        self.repositories: list[str] = []

    def name(self, registry: Registry | None = None) -> str:
        prefix = f"{registry.address}/" if registry else ""
        repository = f"{prefix}reconciler-steps-test/app-{uuid.uuid4().hex[:10]}"
        self.repositories.append(repository)
        return repository


@pytest.fixture
def images(docker_client: docker.DockerClient) -> Iterator[Images]:
    created = Images()
    yield created
    for repository in created.repositories:
        for image in docker_client.images.list(name=repository):
            for reference in image.tags:
                if reference.rpartition(":")[0] == repository:
                    with contextlib.suppress(docker.errors.NotFound):
                        docker_client.images.remove(reference, force=True)


@pytest.fixture(autouse=True)
def same_engine_as_the_fixtures(steps: Steps) -> None:
    """The steps reach the engine the fixtures use, however this machine names it."""
    steps.env.update({name: os.environ[name] for name in ENGINE_VARIABLES if name in os.environ})


def write(directory: Path, files: Mapping[str, str]) -> None:
    for name, content in files.items():
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(content))


def build_step(image_name: str, **kwargs: Any) -> str:
    """A build section with one build step, `id: build-image`, as YAML."""
    lines = "".join(f"      {key}: {value}\n" for key, value in kwargs.items())
    return f"build:\n  - {BUILD}:\n      id: build-image\n      image_name: {image_name}\n{lines}"


def run_in(docker_client: docker.DockerClient, image: str, *command: str) -> str:
    output: bytes = docker_client.containers.run(image, list(command), remove=True)
    return output.decode()


def scratch_image(steps: Steps, image_name: str, **kwargs: Any) -> dict[str, Any]:
    """Build a one-file image FROM scratch: registries receive it in milliseconds."""
    write(steps.cwd, {"Dockerfile": "FROM scratch\nCOPY hello.txt /\n", "hello.txt": "hello\n"})
    return steps.run(build_step(image_name, **kwargs))["build-image"]  # type: ignore[no-any-return]


# --- build ---------------------------------------------------------------------------------


def test_a_built_image_has_the_prefect_outputs_and_runs_what_the_dockerfile_copied(
    steps: Steps, docker_client: docker.DockerClient, base_image: str, images: Images
) -> None:
    name = images.name()
    write(
        steps.cwd,
        {
            "Dockerfile": f"FROM {base_image}\nCOPY hello.txt /app/hello.txt\n",
            "hello.txt": "hello from the build context\n",
        },
    )

    output = steps.run(build_step(name))["build-image"]

    tag = output["tag"]
    assert len(tag) == 12 and int(tag, 16) >= 0
    assert output == {
        "image_name": name,
        "tag": tag,
        "image": f"{name}:{tag}",
        "image_id": docker_client.images.get(f"{name}:{tag}").id,
        "additional_tags": [],
    }
    assert run_in(docker_client, output["image"], "cat", "/app/hello.txt") == (
        "hello from the build context\n"
    )
    assert "[build-image] Step 2/2 : COPY hello.txt /app/hello.txt" in steps.lines


def test_the_tag_stays_while_the_context_is_unchanged_and_follows_its_content(
    steps: Steps, base_image: str, images: Images
) -> None:
    name = images.name()
    write(
        steps.cwd,
        {
            "Dockerfile": f"FROM {base_image}\nCOPY . /app/\n",
            "hello.txt": "one\n",
            ".dockerignore": "notes.txt\n",
            "notes.txt": "not sent to the engine\n",
        },
    )
    first = steps.run(build_step(name))["tag"]

    assert steps.run(build_step(name))["tag"] == first
    write(steps.cwd, {"notes.txt": "an ignored file changed\n"})
    assert steps.run(build_step(name))["tag"] == first
    write(steps.cwd, {"hello.txt": "two\n"})
    assert steps.run(build_step(name))["tag"] != first


def test_additional_tags_name_the_same_image(
    steps: Steps, docker_client: docker.DockerClient, base_image: str, images: Images
) -> None:
    name = images.name()
    write(steps.cwd, {"Dockerfile": f"FROM {base_image}\nCOPY . /app/\n", "a.txt": "a\n"})

    output = steps.run(build_step(name, additional_tags='["latest", "v1.2"]'))

    assert output["additional_tags"] == ["latest", "v1.2"]
    for tag in ("latest", "v1.2"):
        assert docker_client.images.get(f"{name}:{tag}").id == output["image_id"]


def test_build_args_and_platform_reach_the_build_and_args_change_the_tag(
    steps: Steps, docker_client: docker.DockerClient, base_image: str, images: Images
) -> None:
    name = images.name()
    write(
        steps.cwd,
        {"Dockerfile": f'FROM {base_image}\nARG GREETING\nRUN echo "$GREETING" > /greeting\n'},
    )

    platform = f"linux/{docker_client.version()['Arch']}"  # the engine's own: nothing to pull

    hello = steps.run(build_step(name, buildargs="{GREETING: hello-args}", platform=platform))
    bye = steps.run(build_step(name, buildargs="{GREETING: bye-args}", platform=platform))

    assert run_in(docker_client, hello["image"], "cat", "/greeting") == "hello-args\n"
    assert bye["tag"] != hello["tag"]


def test_a_failing_instruction_stops_the_build_naming_it_with_its_exit_code(
    steps: Steps, base_image: str, images: Images
) -> None:
    write(
        steps.cwd,
        {"Dockerfile": f"FROM {base_image}\nRUN sh -c 'echo cannot compile >&2; exit 3'\n"},
    )

    with pytest.raises(StepFailed) as caught:
        steps.run(build_step(images.name()))

    failure = caught.value
    assert failure.exit_code == 3
    assert "failed at step 2/2 (RUN sh -c 'echo cannot compile >&2; exit 3')" in str(failure)
    assert "returned a non-zero code: 3" in str(failure)
    assert "cannot compile" in failure.last_lines


def test_the_tag_covers_the_options_that_shape_the_image(tmp_path: Path) -> None:
    write(tmp_path, {"Dockerfile": "FROM scratch\n"})

    def tag(**options: Any) -> str:
        return build_tag(tmp_path, "Dockerfile", "FROM scratch\n", options)

    assert tag(buildargs={"V": 1}) == tag(buildargs={"V": "1"}) != tag(buildargs={"V": "2"})
    assert tag(platform="linux/arm64") != tag() == tag(nocache=True, pull=True)
    assert tag(target="test") != tag() != tag(labels={"team": "data"})


def test_a_base_image_the_engine_lacks_fails_at_from_with_a_hint(
    steps: Steps, images: Images
) -> None:
    write(steps.cwd, {"Dockerfile": "FROM reconciler-steps-test/no-such-base:1\n"})

    with pytest.raises(StepFailed) as caught:
        steps.run(build_step(images.name()))

    assert "failed at step 1/1 (FROM reconciler-steps-test/no-such-base:1)" in str(caught.value)
    assert "does not have that base image" in str(caught.value.hint)


def test_a_name_without_namespace_gets_prefects_default_build_namespace(
    steps: Steps, docker_client: docker.DockerClient, images: Images
) -> None:
    namespace, _, short_name = images.name().partition("/")
    steps.env["PREFECT_DEFAULT_DOCKER_BUILD_NAMESPACE"] = namespace

    built = scratch_image(steps, short_name)

    assert built["image_name"] == f"{namespace}/{short_name}"
    assert docker_client.images.get(built["image"]).id == built["image_id"]


def test_an_unknown_instruction_is_refused_with_the_builders_message(
    steps: Steps, base_image: str, images: Images
) -> None:
    write(steps.cwd, {"Dockerfile": f"FROM {base_image}\nCOPPY . /app/\n"})

    with pytest.raises(StepFailed) as caught:
        steps.run(build_step(images.name()))

    assert "dockerfile parse error line 2: unknown instruction: COPPY" in str(caught.value)


def test_an_unknown_build_option_is_named_with_a_suggestion(steps: Steps) -> None:
    with pytest.raises(StepFailed) as caught:
        steps.run(build_step("reconciler-steps-test/never-built", buidargs="{A: b}"))

    assert 'build_docker_image does not take "buidargs"' in str(caught.value)
    assert caught.value.hint == 'did you mean "buildargs"?'


# --- dockerfile: auto --------------------------------------------------------------------------


def test_auto_dockerfile_copies_the_context_to_opt_prefect_and_is_removed_after(
    steps: Steps, docker_client: docker.DockerClient, base_image: str, images: Images
) -> None:
    name = images.name()
    write(steps.cwd, {"flow.py": "print('flow')\n"})
    step = build_step(name, dockerfile="auto", base_image=base_image, persist_dockerfile="true")

    first = steps.run(step)
    steps.run(step)  # nothing was left behind that would stop the next run

    assert run_in(docker_client, first["image"], "cat", "flow.py") == "print('flow')\n"
    assert not (steps.cwd / "Dockerfile").exists()
    assert (steps.cwd / "Dockerfile.generated").read_text() == (
        f"FROM {base_image}\nCOPY . /opt/prefect/work/\nWORKDIR /opt/prefect/work/\n"
    )


def test_auto_dockerfile_installs_requirements_when_the_context_has_them(tmp_path: Path) -> None:
    context = tmp_path / "my-flows"
    write(context, {"requirements.txt": "httpx\n"})

    assert render_auto_dockerfile(context, DEFAULT_BASE_IMAGE) == (
        "FROM prefecthq/prefect:3-python3.11\n"
        "COPY requirements.txt /opt/prefect/my-flows/requirements.txt\n"
        "RUN python -m pip install -r /opt/prefect/my-flows/requirements.txt\n"
        "COPY . /opt/prefect/my-flows/\n"
        "WORKDIR /opt/prefect/my-flows/\n"
    )


def test_auto_dockerfile_refuses_to_overwrite_an_existing_dockerfile(steps: Steps) -> None:
    write(steps.cwd, {"Dockerfile": "FROM mine\n"})

    with pytest.raises(StepFailed) as caught:
        steps.run(build_step("reconciler-steps-test/never-built", dockerfile="auto"))

    assert "would overwrite the Dockerfile that already exists" in str(caught.value)
    assert (steps.cwd / "Dockerfile").read_text() == "FROM mine\n"


# --- push ------------------------------------------------------------------------------------


def test_a_pushed_image_and_its_additional_tags_can_be_pulled_back(
    steps: Steps, docker_client: docker.DockerClient, registry: Registry, images: Images
) -> None:
    name = images.name(registry)
    built = scratch_image(steps, name, additional_tags="[stable]")

    pushed = steps.run(
        f"build:\n  - {PUSH}:\n      image_name: {name}\n      tag: {built['tag']}\n"
        "      additional_tags: [stable]\n"
    )

    assert pushed == {
        "image_name": name,
        "tag": built["tag"],
        "image": built["image"],
        "additional_tags": ["stable"],
    }
    for tag in (built["tag"], "stable"):
        docker_client.images.remove(f"{name}:{tag}")
        assert docker_client.images.pull(name, tag=tag).id == built["image_id"]


def test_build_then_push_through_run_steps_with_templated_outputs(
    steps: Steps, docker_client: docker.DockerClient, registry: Registry, images: Images
) -> None:
    name = images.name(registry)
    write(steps.cwd, {"Dockerfile": "FROM scratch\nCOPY hello.txt /\n", "hello.txt": "chain\n"})
    text = f"""
        build:
          - {BUILD}:
              id: build-image
              image_name: {name}
        push:
          - {PUSH}:
              id: push-image
              image_name: "{{{{ build-image.image_name }}}}"
              tag: "{{{{ build-image.tag }}}}"
        """
    build, document = load_steps(text, "build")
    push, _ = load_steps(text, "push")
    context = steps.make_context()

    outputs = run_steps([*build, *push], document, context)

    job_variables = apply_values({"image": "{{ build-image.image }}"}, outputs, environ={})
    assert job_variables["image"] == outputs["push-image"]["image"] == outputs["image"]
    docker_client.images.remove(job_variables["image"])
    pulled = docker_client.images.pull(name, tag=outputs["build-image"]["tag"])
    assert pulled.id == outputs["build-image"]["image_id"]
    assert {BUILD, PUSH} <= registered_steps().keys()


def credentials_step(name: str, tag: str, registry: Registry, password: str) -> str:
    return (
        f"build:\n  - {PUSH}:\n      image_name: {name}\n      tag: {tag}\n"
        f"      credentials:\n        username: {registry.username}\n"
        f"        password: {password}\n        registry_url: {registry.address}\n"
    )


def test_a_push_with_credentials_reaches_the_registry_that_requires_them(
    steps: Steps, docker_client: docker.DockerClient, auth_registry: Registry, images: Images
) -> None:
    name = images.name(auth_registry)
    built = scratch_image(steps, name)

    steps.run(credentials_step(name, built["tag"], auth_registry, str(auth_registry.password)))

    docker_client.images.remove(built["image"])
    pulled = docker_client.images.pull(
        name, tag=built["tag"], auth_config=auth_registry.auth_config
    )
    assert pulled.id == built["image_id"]


def test_a_wrong_password_fails_the_push_and_is_never_shown(
    steps: Steps, auth_registry: Registry, images: Images
) -> None:
    name = images.name(auth_registry)
    built = scratch_image(steps, name)
    wrong = f"wrong-{uuid.uuid4().hex}"

    with pytest.raises(StepFailed) as caught:
        steps.run(credentials_step(name, built["tag"], auth_registry, wrong))

    message = str(caught.value)
    assert f"logging in to {auth_registry.address} as 'reconciler-test' failed" in message
    assert "401 Unauthorized" in message
    everything = "\n".join([message, str(caught.value.hint), *caught.value.last_lines])
    assert wrong not in everything + steps.output


def test_a_push_to_a_registry_that_is_down_fails_with_a_hint(steps: Steps, images: Images) -> None:
    name = images.name(Registry(f"127.0.0.1:{free_port()}"))  # nothing listens there
    built = scratch_image(steps, name)

    with pytest.raises(StepFailed) as caught:
        steps.run(f"build:\n  - {PUSH}:\n      image_name: {name}\n      tag: {built['tag']}\n")

    assert f"pushing {built['image']} failed" in str(caught.value)
    assert "connection refused" in str(caught.value)
    assert "reachable from the Docker engine" in str(caught.value.hint)


# --- no engine, no SDK -----------------------------------------------------------------------


@pytest.mark.parametrize("step", [BUILD, PUSH])
def test_without_an_engine_the_steps_fail_naming_docker_host(
    steps: Steps, step: str, tmp_path: Path
) -> None:
    socket = tmp_path / "no-engine.sock"
    steps.env["DOCKER_HOST"] = f"unix://{socket}"
    write(steps.cwd, {"Dockerfile": "FROM scratch\n"})

    with pytest.raises(StepFailed) as caught:
        steps.run(f"build:\n  - {step}:\n      image_name: reconciler-steps-test/never\n")

    assert f"the Docker engine is not reachable at unix://{socket}" in str(caught.value)
    assert "DOCKER_HOST" in str(caught.value.hint)


def test_without_the_docker_sdk_the_steps_fail_with_an_install_hint(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        sys.modules["docker"] = None  # makes `import docker` fail
        from reconciler.steps.context import StepContext, StepError
        from reconciler.steps.docker import build_docker_image
        try:
            build_docker_image("app", context=StepContext(cwd=Path("."), env={}))
        except StepError as exc:
            print(exc.message)
            print(exc.hint)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )

    assert "the Docker steps need the `docker` Python package" in done.stdout
    assert "pip install 'docker>=7'" in done.stdout
